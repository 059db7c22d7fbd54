"""The benchmark: every page at scale against two baselines and two peers, interleaved, in one run.

    python -m bench.run                      # 10% and 100% of the default scale data, 2 rounds
    python -m bench.run --scale 0.2 --duration 3 --rounds 3 --reuse
    python -m bench.run --no-peers           # without Django admin and sqladmin

For each data size it loads a PostgreSQL database with `flask seed demo` and
`flask seed scale` and serves bench.wsgi with gunicorn on loopback (workers = cores);
Django admin and sqladmin (bench/peers/) serve the 100% database beside them. It signs in
one user per role and measures per page and server: latency p50/p95 over sequential
keep-alive requests, SQL queries per request (X-Query-Count), and throughput under
concurrent load with wrk. A page's cells are measured back to back in an order rotated
each round, every throughput also as a share of the bare endpoint of its round. Then the
write paths (bench/paths.py). The Markdown tables go to bench/results/ and to stdout.
Timings live here, never in the test suite.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench import peers
from bench.serve import Service, form_sign_in, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = {"users": 100_000, "usage": 1_000_000, "minions": 100_000, "jobs": 50_000, "events": 200_000}
PASSWORD = "bench-password-123"
BARE, STOCK = "bare endpoint (ceiling)", "stock ModelView usage_records"
OURS_SMALL, OURS_LARGE = "ours, 10% data", "ours, 100% data"
ROLE_EMAILS = {"admin": "admin@demo.test", "support": "support@demo.test", "user": "ada@demo.test"}


@dataclass
class Target:
    name: str
    role: str
    path: str
    kind: str  # "self-service", "admin", "admin details", "baseline"
    htmx: bool = False
    group: str = ""  # pages compared with each other (deep vs first, week vs all time)
    per_page_param: str | None = None  # query parameter that sets the page size
    conditional: bool = False  # a poll: If-None-Match with the ETag of a first response, answered 304
    peer_paths: dict[str, str] = field(default_factory=dict)  # peer column -> the equivalent page there


@dataclass
class Sample:
    """One cell measured once: a page on one server in one round."""

    p50_ms: float = 0.0
    p95_ms: float = 0.0
    queries: int | None = None
    queries_large_page: int | None = None
    rps: float = 0.0
    errors: int = 0
    note: str = ""  # why the cell was not measured ("no ETag")


@dataclass
class Column:
    """A server measured side by side with the others: ours at 10% or 100% of the data, or a peer."""

    name: str
    server: Service
    cookies: dict[str, str]  # role -> Cookie header of a signed-in browser
    pages: dict[str, Target]  # by name, with the ids and page numbers of this column's database
    ours: bool = False

    def path(self, target: Target) -> str | None:
        """This column's URL of ``target``, or None when it has no such page."""
        own = self.pages.get(target.name)
        if own is None:
            return None
        return own.path if self.ours else own.peer_paths.get(self.name)


def run(cmd: list[str], env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, check=True, text=True, capture_output=True, cwd=ROOT, **kwargs)


def psql(sql: str, database: str = "postgres") -> str:
    """Run ``sql`` on the local server; the output, unaligned and without headers."""
    done = subprocess.run(
        ["psql", "-h", "localhost", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-qtAc", sql],
        capture_output=True, text=True,
    )
    if done.returncode:
        raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}\n{sql.strip()[:300]}")
    return done.stdout.strip()


def database_env(name: str) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgresql://postgres@localhost/{name}",
        FLASK_APP="app.py",
        DEMO_PASSWORD=PASSWORD,
        QUERY_COUNT_HEADER="1",
        INSTANCE_PATH=str(ROOT / "bench" / "results" / "instance"),
        # Sign-in is rate limited per IP; the harness signs in a handful of times.
        AUTH_RATE_LIMIT="1000 per minute",
    )
    return env


def load_database(name: str, fraction: float, reuse: bool) -> dict:
    """Create and seed the database for one data size; returns the scale seed's summary."""
    env = database_env(name)
    sizes = {k: max(1, int(v * fraction)) for k, v in DEFAULT_SIZES.items()}
    flask = [sys.executable, "-m", "flask"]
    if reuse:
        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1":
            return {"reused": True, "sizes": sizes}
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    run(flask + ["db", "upgrade"], env)
    run(flask + ["seed", "demo"], env)
    args = [f"--{k}={v}" for k, v in sizes.items()]
    out = run(flask + ["seed", "scale", *args], env).stdout
    match = re.search(r"([\d,]+) rows in ([\d.]+) s: ([\d,]+) rows/s", out)
    summary = {"sizes": sizes, "output": out.strip().splitlines()[-1]}
    if match:
        summary.update(rows=int(match[1].replace(",", "")), seconds=float(match[2]),
                       rows_per_second=int(match[3].replace(",", "")))
    psql("VACUUM ANALYZE", database=name)
    return summary


class Server(Service):
    """gunicorn serving bench.wsgi (the console and the baselines) on loopback, workers = cores."""

    def __init__(self, database: str) -> None:
        port = free_port()
        super().__init__(
            [sys.executable, "-m", "gunicorn", "-w", str(os.cpu_count() or 2), "-b", f"127.0.0.1:{port}",
             # No access log, as the peers run: gunicorn.conf.py's log would cost every server its share.
             "--log-level", "warning", "--access-logfile", "/dev/null", "bench.wsgi:application"],
            database_env(database), ROOT, "/bare/", port)


def sign_in(server: Service, email: str) -> str:
    """Sign in through the real form; returns the Cookie header of the signed-in browser."""
    return form_sign_in(server, "/login", "csrf_token", {"email": email, "password": PASSWORD})


class UnexpectedStatus(RuntimeError):
    """A page answered otherwise than expected (a 503 from a busy database): noted in its cell, the run goes on."""


def latency(server: Service, path: str, headers: dict, count: int,
            expect: int = 200) -> tuple[list[float], int | None]:
    """Timings of ``count`` sequential requests answered ``expect``, and the page's usual query count.

    The usual (most common) count, because a session's last_seen_at is written at
    most once a minute and would otherwise make single samples disagree.
    """
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    timings, counts = [], []
    for i in range(count + 5):
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != expect:
            raise UnexpectedStatus(f"GET answered {response.status}")
        if i >= 5:  # warm-up requests are not counted
            timings.append(elapsed)
        header = response.getheader("X-Query-Count")
        if header is not None:
            counts.append(int(header))
    conn.close()
    return timings, (statistics.mode(counts) if counts else None)


def throughput(server: Service, path: str, headers: dict, seconds: int) -> tuple[float, int]:
    cmd = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{server.port}{path}"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return rps, errors


def with_param(path: str, name: str, value) -> str:
    return f"{path}{'&' if '?' in path else '?'}{name}={value}"


def measure(column: Column, target: Target, args) -> Sample:
    """The target's page on ``column``'s server: p50/p95 of sequential requests, query count, wrk throughput."""
    path = column.path(target)
    headers = {"Cookie": column.cookies[target.role]} if target.role in column.cookies else {}
    if target.htmx:
        headers["HX-Request"] = "true"
    expect = 200
    if target.conditional:
        response, _ = column.server.request("GET", path, headers=headers)
        etag = response.getheader("ETag")
        if etag is None:
            return Sample(note="no ETag")
        headers["If-None-Match"] = etag
        expect = 304
    result = Sample()
    try:
        timings, result.queries = latency(column.server, path, headers, args.requests, expect)
    except UnexpectedStatus as error:
        return Sample(note=str(error))
    result.p50_ms = statistics.median(timings)
    result.p95_ms = statistics.quantiles(timings, n=20)[18]
    if target.per_page_param and column.ours:
        _, result.queries_large_page = latency(column.server, with_param(path, target.per_page_param, 100), headers, 5)
    result.rps, result.errors = throughput(column.server, path, headers, args.duration)
    return result


def measure_rounds(columns: list[Column], pages: list[Target], args) -> dict[tuple[str, str], list[Sample]]:
    """Every page on every column that has it, ``args.rounds`` times, interleaved.

    A page's cells are measured back to back, in an order rotated each round, so that a busy
    moment of the machine falls on all columns alike; the bare endpoint is measured in every round
    and each figure is compared with the bare endpoint of its own round.
    """
    cells: dict[tuple[str, str], list[Sample]] = {}
    for round_index in range(args.rounds):
        print(f"== round {round_index + 1} of {args.rounds}", flush=True)
        for target in pages:
            present = [column for column in columns if column.path(target) is not None]
            shift = round_index % len(present)
            for column in present[shift:] + present[:shift]:
                sample = measure(column, target, args)
                cells.setdefault((target.name, column.name), []).append(sample)
                print(f"   {target.name:<40} {column.name:<28} " + (sample.note or
                      f"p50 {sample.p50_ms:7.1f} ms  {sample.rps:8.1f} req/s  queries {sample.queries}"), flush=True)
    return cells


def targets(lookup: dict) -> list[Target]:
    """The pages measured; ``lookup`` holds ids found in the loaded database."""
    job, minion = lookup["job_id"], lookup["minion_id"]
    return [
        Target(BARE, "anonymous", "/bare/", "baseline"),
        Target(STOCK, "anonymous", "/stock/admin/stock_usage_records/", "baseline"),
        *lookup["admin_pages"],
        Target("subscription page", "user", "/account/subscription", "self-service", per_page_param="per_page"),
        Target("subscription panel (HTMX)", "user", "/account/subscription", "self-service", htmx=True),
        Target("provider page", "user", "/account/providers", "self-service"),
        Target("job list", "user", "/jobs", "self-service", per_page_param="per_page"),
        Target("job list, staff (all users)", "admin", "/jobs", "self-service", per_page_param="per_page"),
        Target("job detail", "user", f"/jobs/{job}", "self-service"),
        Target("new job form", "user", "/jobs/new", "self-service"),
        Target("minion page", "user", f"/minions/{minion}", "self-service"),
        Target("leaderboard page 1", "user", "/leaderboard", "self-service", group="leaderboard", per_page_param="per_page"),
        Target("leaderboard page 1 (HTMX)", "user", "/leaderboard", "self-service", htmx=True),
        Target("leaderboard around rank 90,000", "user", lookup["leaderboard_deep"], "self-service", group="leaderboard"),
        Target("leaderboard, this week", "user", "/leaderboard?window=week", "self-service", group="leaderboard-window"),
        Target("support user search", "support", "/support/users?q=scale-user-0042", "self-service"),
        Target("support user search (HTMX)", "support", "/support/users?q=scale-user-0042", "self-service", htmx=True),
        Target("304 poll: job row", "user", f"/jobs/{job}/row", "self-service", htmx=True, conditional=True),
        Target("304 poll: job page", "user", f"/jobs/{job}", "self-service", htmx=True, conditional=True),
        Target("304 poll: leaderboard refresh", "user", "/leaderboard", "self-service", htmx=True, conditional=True),
        Target("304 poll: workers page", "admin", "/jobs/workers", "self-service", htmx=True, conditional=True),
    ]


def discover(database: str) -> dict:
    """Ids and URLs that depend on the loaded data."""
    def scalar(sql: str) -> str:
        return psql(sql, database=database)

    ada = "SELECT id FROM users WHERE email = 'ada@demo.test'"
    minions = int(scalar("SELECT count(*) FROM minions"))
    deep_rank = min(90_000, int(minions * 0.9))
    return {
        "job_id": scalar(f"SELECT id FROM training_jobs WHERE user_id = ({ada}) ORDER BY id LIMIT 1"),
        "minion_id": scalar(f"SELECT id FROM minions WHERE owner_user_id = ({ada}) ORDER BY id LIMIT 1"),
        "leaderboard_deep": f"/leaderboard?page={deep_rank // 20}",
        "admin_pages": [page for admin_list in ADMIN_LISTS for page in admin_pages(admin_list, scalar)],
    }


def admin_pages(admin_list: peers.AdminList, scalar) -> list[Target]:
    """One admin list's first, filtered, search and deep (95%) pages, and a details page, with the peers' equivalents."""
    table = admin_list.table
    rows = int(scalar(f"SELECT count(*) FROM {table}"))
    deep = max(0, int(rows * 0.95) // 20)  # Flask-Admin pages count from 0
    record = scalar(f"SELECT id FROM {table} ORDER BY id OFFSET {rows // 2} LIMIT 1")
    ours = {"first": "", "filtered": f"?{admin_list.ours_filter}", "search": f"?search={SEARCH}",
            "deep": f"?page={deep}", "details": f"details/?id={record}"}
    return [
        Target(f"admin {table}: {label}", "admin", f"/admin/{table}/{ours[page]}",
               "admin details" if page == "details" else "admin", group=table,
               per_page_param=None if page == "details" else "page_size",
               peer_paths=peers.peer_paths(admin_list, page, SEARCH, deep, record))
        for page, label in (("first", "first page"), ("filtered", "filtered"), ("search", "search"),
                            ("deep", "deep page"), ("details", "details"))
    ]


SEARCH = "scale-user-0042"
ADMIN_LISTS = [
    peers.AdminList("users", "flt0_is_active_equals=1", "user", "is_active__exact=1", "user", "is_active=true"),
    peers.AdminList("usage_records", "flt0_metric_equals=requests", "usagerecord", "metric__exact=requests",
                    "usage-record", "metric=requests"),
    peers.AdminList("payments", "flt0_status_equals=succeeded", "payment", "status__exact=succeeded",
                    "payment", "status=succeeded"),
    peers.AdminList("training_jobs", "flt0_status_equals=running", "trainingjob", "status__exact=running",
                    "training-job", "status=running"),
]


def export_memory(database: str, rows: int) -> dict:
    """Peak RSS of a CSV export of about ``rows`` usage records, each in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "bench.export_memory", database, str(rows)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def export_memories(database: str) -> dict | None:
    """export_memory at 10k and 100k rows; None when it failed (its error goes to stderr, the report still gets written)."""
    try:
        return {rows: export_memory(database, rows) for rows in (10_000, 100_000)}
    except subprocess.CalledProcessError as error:
        print(error.stderr[-2000:], file=sys.stderr)
        return None


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def spread(values: list[float], fmt: str) -> str:
    """The median of the rounds and their range: "412 (398–430)"."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"


def share_floor(target: Target) -> float:
    """The least share of the bare endpoint's throughput a page must reach."""
    if target.kind.startswith("admin"):
        return 0.04
    if target.conditional:
        return 0.40
    return 0.15 if target.htmx else 0.08


def render_report(runs: dict, args) -> str:
    cells, peer_columns = runs["cells"], runs["peer_columns"]
    bare = [s.rps for s in cells[(BARE, OURS_LARGE)]]

    def rounds(name: str, column: str) -> list[Sample]:
        return cells.get((name, column), [])

    def shares(name: str, column: str) -> list[float]:
        return [ratio(s.rps, b) for s, b in zip(rounds(name, column), bare)]

    def note(name: str, column: str) -> str:
        """Why a round of this cell was not measured, if one was not."""
        return next((s.note for s in rounds(name, column) if s.note), "")

    def median_rps(name: str, column: str) -> float:
        return statistics.median(s.rps for s in rounds(name, column))

    peer_note = (" Peers over the 100% database: " + ", ".join(peer_columns) + "; each cell is req/s "
                 "(range); share of bare." if peer_columns else " Peers skipped (--no-peers).")
    lines = [
        "# Minion Console benchmark",
        "",
        f"Scale: {runs['seeds']['100%'].get('sizes')} (100%) and a tenth of it (10%). "
        f"gunicorn with {os.cpu_count()} workers on loopback; p50/p95 over {args.requests} sequential requests; "
        f"throughput with wrk -t2 -c8 for {args.duration} s per cell. {args.rounds} rounds; in each, a page's cells "
        f"(ours at 10% and 100% of the data, and each peer) are measured back to back in a rotated order. "
        f"Figures are medians of the rounds with their range; shares are of the bare endpoint of the same round."
        + peer_note,
        "",
        "| page | role | p50 10% ms | p50 100% ms | p95 100% ms | p50 100/10 | queries 10% | queries 100% "
        "| queries @100/page | req/s | % of bare | " + "".join(f"{c} | " for c in peer_columns)
        + ("ours / fastest peer | " if peer_columns else "") + "errors |",
        "|---|---|" + "---:|" * (10 + len(peer_columns) + bool(peer_columns)),
    ]
    misses = []
    for target in runs["pages"]:
        name = target.name
        small, large = rounds(name, OURS_SMALL), rounds(name, OURS_LARGE)
        if note(name, OURS_SMALL) or note(name, OURS_LARGE):
            why = note(name, OURS_LARGE) or note(name, OURS_SMALL)
            lines.append(f"| {name} | {target.role} | {why} | " + "– | " * (8 + len(peer_columns) + bool(peer_columns))
                         + "– |")
            misses.append(f"{name}: {why}")
            continue
        growth = [ratio(m.p50_ms, s.p50_ms) for s, m in zip(small, large)]
        share = shares(name, OURS_LARGE)
        peers_rps = {c: median_rps(name, c) for c in peer_columns if rounds(name, c) and not note(name, c)}
        peer_cells = [f"{spread([s.rps for s in rounds(name, c)], '.0f')}; {statistics.median(shares(name, c)):.1%}"
                      if c in peers_rps else note(name, c) or "–" for c in peer_columns]
        versus = ratio(median_rps(name, OURS_LARGE), max(peers_rps.values())) if peers_rps else None
        queries_large_page = large[0].queries_large_page
        lines.append(
            f"| {name} | {target.role} | {statistics.median(s.p50_ms for s in small):.1f} "
            f"| {statistics.median(m.p50_ms for m in large):.1f} | {statistics.median(m.p95_ms for m in large):.1f} "
            f"| {statistics.median(growth):.2f} | {small[0].queries} | {large[0].queries} "
            f"| {queries_large_page if queries_large_page is not None else '–'} "
            f"| {spread([m.rps for m in large], '.0f')} | {spread(share, '.1%')} | "
            + "".join(f"{cell} | " for cell in peer_cells)
            + (f"{versus:.2f}x | " if versus is not None else "– | " if peer_columns else "")
            + f"{sum(m.errors for m in large)} |"
        )
        if target.kind == "baseline":
            continue
        floor = share_floor(target)
        if statistics.median(share) < floor:
            misses.append(f"{name}: throughput {statistics.median(share):.1%} of bare, target {floor:.0%}")
        least_versus = 1.0 if target.kind == "admin details" else 1.5
        if versus is not None and target.kind.startswith("admin") and versus < least_versus:
            misses.append(f"{name}: throughput {versus:.2f}x the fastest peer's (target {least_versus}x)")
        if small[0].queries != large[0].queries:
            misses.append(f"{name}: queries {small[0].queries} at 10% but {large[0].queries} at 100%")
        if queries_large_page is not None and queries_large_page != large[0].queries:
            misses.append(f"{name}: queries {large[0].queries} at page size 20 but {queries_large_page} at 100")
        if statistics.median(growth) > 1.5:
            misses.append(f"{name}: p50 grew {statistics.median(growth):.2f}x from 10% to 100% (target 1.5x)")
        if any(m.errors for m in large):
            misses.append(f"{name}: {sum(m.errors for m in large)} errors under load")

    comparisons = [
        (f"admin {a.table}: deep page", f"admin {a.table}: first page", 1.5) for a in ADMIN_LISTS
    ] + [
        ("leaderboard around rank 90,000", "leaderboard page 1", 1.5),
        ("leaderboard, this week", "leaderboard page 1", 2.0),
    ]
    lines += ["", "| comparison (100% data, same rounds) | ratio | target |", "|---|---:|---|"]
    for slow, fast, limit in comparisons:
        r = statistics.median(ratio(a.p50_ms, b.p50_ms)
                              for a, b in zip(rounds(slow, OURS_LARGE), rounds(fast, OURS_LARGE)))
        lines.append(f"| p50 {slow} / {fast} | {r:.2f} | ≤ {limit} |")
        if r > limit:
            misses.append(f"{slow}: p50 {r:.2f}x {fast} (target {limit}x)")
    speedup = ratio(median_rps("admin usage_records: first page", OURS_LARGE), median_rps(STOCK, OURS_LARGE))
    lines.append(f"| throughput our usage_records list / stock ModelView | {speedup:.1f}x | ≥ 5x |")
    if speedup < 5:
        misses.append(f"usage_records list only {speedup:.1f}x the stock ModelView (target 5x)")
    if runs["export"] is None:
        lines.append("| CSV export memory growth | failed (its error is above the table) | < 50 MB |")
        misses.append("CSV export memory: the measurement failed")
        growth_mb = 0.0
    else:
        small_export, large_export = runs["export"][10_000], runs["export"][100_000]
        growth_mb = large_export["rss_peak_mb"] - small_export["rss_peak_mb"]
        lines.append(f"| CSV export memory growth, {small_export['rows']:,} → {large_export['rows']:,} usage_records "
                     f"| {growth_mb:.1f} MB | < 50 MB |")
    if growth_mb >= 50:
        misses.append(f"CSV export grew {growth_mb:.1f} MB from 10k to 100k rows (target < 50 MB)")
    seed = runs["seeds"]["100%"]
    if "rows_per_second" in seed:
        lines.append(f"| scale seed rows/s | {seed['rows_per_second']:,} | ≥ 50,000 |")
        if seed["rows_per_second"] < 50_000:
            misses.append(f"scale seed loaded {seed['rows_per_second']:,} rows/s (target 50,000)")

    lines += ["", "| path (100% data) | result | target |", "|---|---:|---|"]
    for path in runs["paths"]:
        lines.append(f"| {path.name} | {path.result()} | {path.target_text()} |")
        if path.missed():
            misses.append(f"{path.name}: {path.result()} (target {path.target_text()})")
    lines += ["", "## Targets missed" if misses else "## All targets met", ""]
    lines += [f"- {miss}" for miss in misses]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark every page at scale against baselines and peers.")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default scale data for the large run")
    parser.add_argument("--requests", type=int, default=60, help="sequential requests per cell for p50/p95")
    parser.add_argument("--duration", type=int, default=4, help="seconds of wrk load per cell")
    parser.add_argument("--rounds", type=int, default=2, help="times every cell is measured, interleaved")
    parser.add_argument("--reuse", action="store_true", help="reuse already loaded benchmark databases")
    parser.add_argument("--no-peers", action="store_true", help="skip Django admin and sqladmin")
    parser.add_argument("--database-prefix", default="minion_bench", help="names of the benchmark databases")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/1", help="Redis for the Celery measurement")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        print("wrk is needed for the throughput runs: apt-get install wrk", file=sys.stderr)
        return 2
    from bench import paths  # it builds on this module

    RESULTS.mkdir(parents=True, exist_ok=True)
    databases, seeds = {}, {}
    for label, fraction in (("10%", args.scale * 0.1), ("100%", args.scale)):
        databases[label] = database = f"{args.database_prefix}_{int(fraction * 1000)}"
        print(f"== {label} of the scale data ({fraction:.0%} of defaults) in {database}", flush=True)
        seeds[label] = load_database(database, fraction, args.reuse)
        print(f"   seeded: {seeds[label].get('output', 'reused')}", flush=True)
    with ExitStack() as stack:
        columns = []
        for label, database in databases.items():
            server = stack.enter_context(Server(database))
            cookies = {role: sign_in(server, email) for role, email in ROLE_EMAILS.items()}
            pages = targets(discover(database))
            columns.append(Column(f"ours, {label} data", server, cookies, {t.name: t for t in pages}, ours=True))
        large_server = columns[-1].server
        if not args.no_peers:
            columns += peer_columns(stack, databases["100%"], columns[-1].pages)
        cells = measure_rounds(columns, pages, args)
        path_results = paths.measure(large_server, databases["100%"], args)
    runs = {"seeds": seeds, "cells": cells, "pages": pages, "paths": path_results,
            "peer_columns": [c.name for c in columns if not c.ours],
            "export": export_memories(databases["100%"])}
    report = render_report(runs, args)
    path = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(report)
    print(report)
    print(f"(written to {path.relative_to(ROOT)})")
    return 0


def peer_columns(stack: ExitStack, database: str, pages: dict[str, Target]) -> list[Column]:
    """Django admin (twice: with and without the full result count) and sqladmin, started over ``database``."""
    url = database_env(database)["DATABASE_URL"]
    print("== starting the peers", flush=True)
    django = stack.enter_context(peers.django_admin(url, PASSWORD))
    sqladmin = stack.enter_context(peers.sqladmin(url))
    django_cookies = {"admin": peers.django_sign_in(django, PASSWORD)}
    return [Column(peers.DJANGO, django, django_cookies, pages), Column(peers.DJANGO_NO_COUNT, django, django_cookies, pages),
            Column(peers.SQLADMIN, sqladmin, {}, pages)]


if __name__ == "__main__":
    sys.exit(main())
