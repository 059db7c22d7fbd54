"""The benchmark: every page at scale against two baselines, in one run.

    python -m bench.run                      # 10% and 100% of the default scale data
    python -m bench.run --scale 0.2 --duration 3 --reuse

For each data size it loads a PostgreSQL database with `flask seed demo` and
`flask seed scale`, serves bench.wsgi with gunicorn on loopback (workers = cores),
signs in one user per role, and measures per page: server latency p50/p95 over
sequential keep-alive requests, SQL queries per request (X-Query-Count), and
throughput under concurrent load with wrk. The Markdown table goes to
bench/results/ and to stdout. Timings live here, never in the test suite.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = {"users": 100_000, "usage": 1_000_000, "minions": 100_000, "jobs": 50_000, "events": 200_000}
PASSWORD = "bench-password-123"
ROLE_EMAILS = {"admin": "admin@demo.test", "support": "support@demo.test", "user": "ada@demo.test"}


@dataclass
class Target:
    name: str
    role: str
    path: str
    kind: str  # "self-service", "admin", "baseline"
    htmx: bool = False
    group: str = ""  # pages compared with each other (deep vs first, week vs all time)
    per_page_param: str | None = None  # query parameter that sets the page size


@dataclass
class Measurement:
    target: Target
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    queries: int | None = None
    queries_large_page: int | None = None
    rps: float = 0.0
    errors: int = 0
    notes: list[str] = field(default_factory=list)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving bench.wsgi on loopback."""

    startup_seconds = 60

    def __init__(self, database: str) -> None:
        self.port = free_port()
        self.env = database_env(database)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        workers = os.cpu_count() or 2
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}",
             "--log-level", "warning", "bench.wsgi:application"],
            cwd=ROOT, env=self.env,
        )
        deadline = time.time() + self.startup_seconds
        while time.time() < deadline:
            try:
                self.request("GET", "/bare/")
                return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response, data


def sign_in(server: Server, email: str) -> str:
    """Sign in through the real form; returns the Cookie header of the signed-in browser."""
    response, body = server.request("GET", "/login")
    cookies = cookie_jar(response)
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', body) or re.search(
        rb'name="csrf_token" value="([^"]+)"', body)
    form = urlencode({"email": email, "password": PASSWORD, "csrf_token": token[1].decode()})
    response, _ = server.request("POST", "/login", form, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie_header(cookies)})
    if response.status != 302:
        raise RuntimeError(f"sign-in as {email} failed: {response.status}")
    cookies.update(cookie_jar(response))
    return cookie_header(cookies)


def cookie_jar(response) -> dict:
    jar = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


def cookie_header(jar: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def latency(server: Server, path: str, headers: dict, count: int) -> tuple[list[float], int | None]:
    """Timings of ``count`` sequential requests, and the page's usual query count.

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
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        if i >= 5:  # warm-up requests are not counted
            timings.append(elapsed)
        header = response.getheader("X-Query-Count")
        if header is not None:
            counts.append(int(header))
    conn.close()
    return timings, (statistics.mode(counts) if counts else None)


def throughput(server: Server, path: str, headers: dict, seconds: int) -> tuple[float, int]:
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


def measure(server: Server, target: Target, cookies: dict, args) -> Measurement:
    headers = {"Cookie": cookies.get(target.role, "")} if target.role != "anonymous" else {}
    if target.htmx:
        headers["HX-Request"] = "true"
    result = Measurement(target)
    timings, result.queries = latency(server, target.path, headers, args.requests)
    result.p50_ms = statistics.median(timings)
    result.p95_ms = statistics.quantiles(timings, n=20)[18]
    if target.per_page_param:
        _, result.queries_large_page = latency(server, with_param(target.path, target.per_page_param, 100), headers, 5)
    result.rps, result.errors = throughput(server, target.path, headers, args.duration)
    return result


def targets(lookup: dict) -> list[Target]:
    """The pages measured; ``lookup`` holds ids found in the loaded database."""
    admin_list = lambda name, endpoint, suffix="": Target(  # noqa: E731
        name, "admin", f"/admin/{endpoint}/{suffix}", "admin", group=endpoint, per_page_param="page_size")
    return [
        Target("bare endpoint (ceiling)", "anonymous", "/bare/", "baseline"),
        Target("stock ModelView usage_records", "anonymous", "/stock/admin/stock_usage_records/", "baseline"),
        *lookup["admin_pages"](admin_list),
        Target("subscription page", "user", "/account/subscription", "self-service", per_page_param="per_page"),
        Target("subscription panel (HTMX)", "user", "/account/subscription", "self-service", htmx=True),
        Target("provider page", "user", "/account/providers", "self-service"),
        Target("job list", "user", "/jobs", "self-service", per_page_param="per_page"),
        Target("job list, staff (all users)", "admin", "/jobs", "self-service", per_page_param="per_page"),
        Target("job detail", "user", f"/jobs/{lookup['job_id']}", "self-service"),
        Target("leaderboard page 1", "user", "/leaderboard", "self-service", group="leaderboard", per_page_param="per_page"),
        Target("leaderboard page 1 (HTMX)", "user", "/leaderboard", "self-service", htmx=True),
        Target("leaderboard around rank 90,000", "user", lookup["leaderboard_deep"], "self-service", group="leaderboard"),
        Target("leaderboard, this week", "user", "/leaderboard?window=week", "self-service", group="leaderboard-window"),
        Target("support user search", "support", "/support/users?q=scale-user-0042", "self-service"),
        Target("support user search (HTMX)", "support", "/support/users?q=scale-user-0042", "self-service", htmx=True),
    ]


def discover(database: str) -> dict:
    """Ids and URLs that depend on the loaded data."""
    def scalar(sql: str) -> str:
        return psql(sql, database=database)

    job_id = scalar("SELECT j.id FROM training_jobs j JOIN users u ON u.id = j.user_id"
                    " WHERE u.email = 'ada@demo.test' ORDER BY j.id LIMIT 1")
    row_counts = {table: int(scalar(f"SELECT count(*) FROM {table}")) for table, _ in ADMIN_LISTS}
    minions = int(scalar("SELECT count(*) FROM minions"))
    deep_rank = min(90_000, int(minions * 0.9))
    return {
        "job_id": job_id,
        "leaderboard_deep": f"/leaderboard?page={deep_rank // 20}",
        "admin_pages": admin_pages(row_counts),
    }


def admin_pages(row_counts: dict[str, int]):
    def build(admin_list) -> list[Target]:
        pages = []
        for table, flt in ADMIN_LISTS:
            deep = max(0, int(row_counts[table] * 0.95) // 20)  # Flask-Admin pages count from 0
            pages += [
                admin_list(f"admin {table}: first page", table),
                admin_list(f"admin {table}: filtered", table, flt),
                admin_list(f"admin {table}: search", table, "?search=scale-user-0042"),
                admin_list(f"admin {table}: deep page", table, f"?page={deep}"),
            ]
        return pages

    return build


# (table, which is also the admin URL segment, a filter query string)
ADMIN_LISTS = [
    ("users", "?flt0_is_active_equals=1"),
    ("usage_records", "?flt0_metric_equals=requests"),
    ("payments", "?flt0_status_equals=succeeded"),
    ("training_jobs", "?flt0_status_equals=running"),
]


def export_memory(database: str, rows: int) -> dict:
    """Peak RSS of a CSV export of about ``rows`` usage records, each in a fresh process."""
    out = subprocess.run([sys.executable, "-m", "bench.export_memory", database, str(rows)],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def render_report(runs: dict, args) -> str:
    small, large = runs["10%"]["results"], runs["100%"]["results"]
    bare = next(m for m in large if m.target.name.startswith("bare"))
    stock = next(m for m in large if m.target.name.startswith("stock"))
    lines = [
        "# Minion Console benchmark",
        "",
        f"Scale: {runs['100%']['seed'].get('sizes')} (100%) and a tenth of it (10%). "
        f"gunicorn with {os.cpu_count()} workers on loopback; p50/p95 over {args.requests} sequential requests; "
        f"throughput with wrk -t2 -c8 for {args.duration} s per page.",
        "",
        "| page | role | p50 10% ms | p50 100% ms | p95 100% ms | p50 100/10 | queries 10% | queries 100% | queries @100/page | req/s | % of bare | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    misses = []
    for s, m in zip(small, large):
        growth = ratio(m.p50_ms, s.p50_ms)
        share = ratio(m.rps, bare.rps)
        lines.append(
            f"| {m.target.name} | {m.target.role} | {s.p50_ms:.1f} | {m.p50_ms:.1f} | {m.p95_ms:.1f} | {growth:.2f} | "
            f"{s.queries} | {m.queries} | {m.queries_large_page if m.queries_large_page is not None else '–'} | "
            f"{m.rps:.0f} | {share:.1%} | {m.errors} |"
        )
        if m.target.kind == "baseline":
            continue
        floor = 0.15 if m.target.kind == "self-service" else 0.04
        if share < floor:
            misses.append(f"{m.target.name}: throughput {share:.1%} of bare, target {floor:.0%}")
        if s.queries != m.queries:
            misses.append(f"{m.target.name}: queries {s.queries} at 10% but {m.queries} at 100%")
        if m.queries_large_page is not None and m.queries_large_page != m.queries:
            misses.append(f"{m.target.name}: queries {m.queries} at page size 20 but {m.queries_large_page} at 100")
        if growth > 1.5:
            misses.append(f"{m.target.name}: p50 grew {growth:.2f}x from 10% to 100% (target 1.5x)")
        if m.errors:
            misses.append(f"{m.target.name}: {m.errors} errors under load")
    by_name = {m.target.name: m for m in large}
    comparisons = [
        (f"admin {t}: deep page", f"admin {t}: first page", 2.0) for t, _ in ADMIN_LISTS
    ] + [
        ("leaderboard around rank 90,000", "leaderboard page 1", 2.0),
        ("leaderboard, this week", "leaderboard page 1", 2.0),
    ]
    lines += ["", "| comparison (100% data) | ratio | target |", "|---|---:|---|"]
    for slow, fast, limit in comparisons:
        r = ratio(by_name[slow].p50_ms, by_name[fast].p50_ms)
        lines.append(f"| p50 {slow} / {fast} | {r:.2f} | ≤ {limit} |")
        if r > limit:
            misses.append(f"{slow}: p50 {r:.2f}x {fast} (target {limit}x)")
    ours = by_name["admin usage_records: first page"]
    speedup = ratio(ours.rps, stock.rps)
    lines.append(f"| throughput our usage_records list / stock ModelView | {speedup:.1f}x | ≥ 5x |")
    if speedup < 5:
        misses.append(f"usage_records list only {speedup:.1f}x the stock ModelView (target 5x)")
    small_export, large_export = runs["export"][10_000], runs["export"][100_000]
    growth_mb = large_export["rss_peak_mb"] - small_export["rss_peak_mb"]
    lines.append(f"| CSV export memory growth, {small_export['rows']:,} → {large_export['rows']:,} usage_records "
                 f"| {growth_mb:.1f} MB | < 50 MB |")
    if growth_mb >= 50:
        misses.append(f"CSV export grew {growth_mb:.1f} MB from 10k to 100k rows (target < 50 MB)")
    seed = runs["100%"]["seed"]
    if "rows_per_second" in seed:
        lines.append(f"| scale seed rows/s | {seed['rows_per_second']:,} | ≥ 50,000 |")
        if seed["rows_per_second"] < 50_000:
            misses.append(f"scale seed loaded {seed['rows_per_second']:,} rows/s (target 50,000)")
    lines += ["", "## Targets missed" if misses else "## All targets met", ""]
    lines += [f"- {miss}" for miss in misses]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark every page at scale against baselines.")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default scale data for the large run")
    parser.add_argument("--requests", type=int, default=60, help="sequential requests per page for p50/p95")
    parser.add_argument("--duration", type=int, default=4, help="seconds of wrk load per page")
    parser.add_argument("--reuse", action="store_true", help="reuse already loaded benchmark databases")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
    if shutil.which("wrk") is None:
        print("wrk is needed for the throughput runs: apt-get install wrk", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = {}
    for label, fraction in (("10%", args.scale * 0.1), ("100%", args.scale)):
        database = f"minion_bench_{int(fraction * 1000)}"
        print(f"== {label} of the scale data ({fraction:.0%} of defaults) in {database}", flush=True)
        seed = load_database(database, fraction, args.reuse)
        print(f"   seeded: {seed.get('output', 'reused')}", flush=True)
        with Server(database) as server:
            cookies = {role: sign_in(server, email) for role, email in ROLE_EMAILS.items()}
            lookup = discover(database)
            results = []
            for target in targets(lookup):
                results.append(measure(server, target, cookies, args))
                m = results[-1]
                print(f"   {target.name:<40} p50 {m.p50_ms:7.1f} ms  p95 {m.p95_ms:7.1f} ms  "
                      f"{m.rps:8.1f} req/s  queries {m.queries}", flush=True)
        runs[label] = {"seed": seed, "results": results}
    runs["export"] = {rows: export_memory(database, rows) for rows in (10_000, 100_000)}
    report = render_report(runs, args)
    path = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.md"
    path.write_text(report)
    print(report)
    print(f"(written to {path.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
