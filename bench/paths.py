"""The write paths at scale, for the harness's second table: runner reports, metering ingest, Celery jobs.

Each is measured once per round against the 100% database's console server; the subscription page
after 10M usage events comes from the last ``python -m bench.metering`` report (its own long load).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench import metering
from bench.run import RESULTS, ROOT, database_env, run, spread
from bench.serve import Service

RUNNERS = 8
REPORTS_PER_RUNNER = 50
METERING_BATCHES = 30
CELERY_TASKS = 1_000


@dataclass
class PathResult:
    name: str
    unit: str
    floor: float | None = None  # the target: at least this many per second
    values: list[float] = field(default_factory=list)  # one per round
    text: str = ""  # a result not measured here (or why it could not be)

    def result(self) -> str:
        if self.text:
            return self.text
        return f"{spread(self.values, ',.0f')} {self.unit}"

    def target_text(self) -> str:
        return f"≥ {self.floor:,.0f} {self.unit}" if self.floor else "≈ p50 before the load"

    def missed(self) -> bool:
        return bool(self.values) and self.floor is not None and statistics.median(self.values) < self.floor


def post_json(conn: http.client.HTTPConnection, path: str, token: str, body: dict) -> tuple[int, bytes]:
    conn.request("POST", path, body=json.dumps(body),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, response.read()


def runner_token(database: str) -> str:
    out = run([sys.executable, "-m", "flask", "runners", "create", f"bench-{uuid.uuid4().hex[:8]}"],
              database_env(database)).stdout
    return out.strip().splitlines()[-1]


def runner_reports(server: Service, database: str) -> float:
    """Progress reports per second from RUNNERS runners at once, each on a job it claimed first.

    Each run claims RUNNERS queued jobs of the database for good: reload it (no --reuse) when they run out.
    """
    with ThreadPoolExecutor(RUNNERS) as pool:
        tokens = list(pool.map(lambda _: runner_token(database), range(RUNNERS)))
    start = threading.Barrier(RUNNERS + 1)
    failures: list[str] = []

    def work(token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        status, body = post_json(conn, "/api/runner/jobs/claim", token, {"capabilities": ["internal", "external"]})
        job = json.loads(body)["job"] if status == 200 else None
        start.wait()
        if job is None:
            failures.append(f"claim answered {status}: no queued job left (load the database again)")
            return
        for step in range(REPORTS_PER_RUNNER):
            status, body = post_json(conn, f"/api/runner/jobs/{job}/report", token, {
                "report_id": f"bench-{job}-{step}", "status": "running", "progress": step / REPORTS_PER_RUNNER,
                "metrics": {"loss": 1 / (step + 1)}, "events": [{"message": f"Step {step}", "metrics": {"loss": 1 / (step + 1)}}]})
            if status != 200:
                failures.append(f"report answered {status}: {body[:200]!r}")
                return
        conn.close()

    threads = [threading.Thread(target=work, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(failures[0])
    return RUNNERS * REPORTS_PER_RUNNER / elapsed


def metering_ingest(server: Service, database: str) -> float:
    """Events per second through POST /api/usage/events, batches of 1,000, one sender per core (bench.metering)."""
    token = metering.new_token(database)
    rate, _ = metering.api_ingest(server, token, metering.subscribed_users(database), METERING_BATCHES,
                                  os.cpu_count() or 2, database)
    return rate


@contextmanager
def celery_worker(env: dict):
    """A real Celery worker (prefork, one process per core) on the Redis broker, running bench.celery_noop."""
    process = subprocess.Popen([sys.executable, "-m", "celery", "--quiet", "-A", "bench.celery_noop", "worker",
                                "-c", str(os.cpu_count() or 2), "-l", "warning",
                                "--without-gossip", "--without-mingle", "--without-heartbeat"], cwd=ROOT, env=env)
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


def celery_jobs(tasks, count: int = CELERY_TASKS) -> tuple[float, float]:
    """Tasks published per second, and published-and-completed per second, for ``count`` trivial tasks.

    ``tasks`` is bench.celery_noop, imported once the environment names the broker.
    """
    tasks.counter.set(tasks.DONE, 0)
    began = time.perf_counter()
    for _ in range(count):
        tasks.noop.delay()
    published = time.perf_counter() - began
    deadline = time.time() + 300
    while (done := int(tasks.counter.get(tasks.DONE) or 0)) < count:
        if time.time() > deadline:
            raise RuntimeError(f"Celery completed {done} of {count} tasks in 5 minutes")
        time.sleep(0.02)
    return count / published, count / (time.perf_counter() - began)


def subscription_after_load() -> str:
    """The subscription page's p50 after the metering benchmark's load, from its last report."""
    report = RESULTS / "metering.md"
    if not report.exists():
        return "not measured: run `python -m bench.metering`"
    rows = re.findall(r"\| subscription page \(ada\), ([\d,]+) usage records[^|]*\| p50 ([\d.]+) ms", report.read_text())
    (before_records, before), (after_records, after) = rows[0], rows[-1]
    stamp = time.strftime("%Y-%m-%d", time.gmtime(report.stat().st_mtime))
    return (f"p50 {after} ms at {after_records} usage records, {before} ms at {before_records} "
            f"(bench/results/metering.md, {stamp})")


def measure(server: Service, database: str, args) -> list[PathResult]:
    reports = PathResult(f"runner reports, {RUNNERS} runners at once", "reports/s", 1_000)
    ingest = PathResult("metering ingest, POST /api/usage/events, batches of 1,000", "events/s", 20_000)
    dispatched = PathResult(f"Celery: {CELERY_TASKS:,} trivial tasks published on Redis", "jobs/s", 500)
    completed = PathResult(f"Celery: {CELERY_TASKS:,} trivial tasks published and completed by a worker", "jobs/s", 500)
    env = {**database_env(database), "CELERY_BROKER_URL": args.broker, "CELERY_QUEUE": "bench-noop"}
    os.environ.update(env)  # the harness publishes through the same app as the worker
    from bench import celery_noop

    with celery_worker(env):
        celery_jobs(celery_noop, count=10)  # warm-up: waits for the worker to consume
        for round_index in range(args.rounds):
            print(f"== write paths, round {round_index + 1} of {args.rounds}", flush=True)
            try:
                reports.values.append(runner_reports(server, database))
                ingest.values.append(metering_ingest(server, database))
                rates = celery_jobs(celery_noop)
            except (RuntimeError, OSError, http.client.HTTPException) as error:
                # Say so in the table rather than lose the pages measured before.
                for path in (reports, ingest, dispatched, completed):
                    path.text = f"round {round_index + 1} failed: {str(error)[:200]}"
                break
            dispatched.values.append(rates[0])
            completed.values.append(rates[1])
            for path in (reports, ingest, dispatched, completed):
                print(f"   {path.name}: {path.values[-1]:,.0f} {path.unit}", flush=True)
    after_load = PathResult("subscription page after 10M usage events", "", text=subscription_after_load())
    return [reports, ingest, dispatched, completed, after_load]
