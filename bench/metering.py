"""Metering at scale: ingest speed of the metering API, and the subscription page before and after 10M events.

    python -m bench.metering                         # 10M events, 60 batches of 1,000 per ingest run
    python -m bench.metering --events 1000000 --reuse

On a PostgreSQL database of its own seeded with `flask seed demo`, it measures:

1. ingest through ``record_usage`` in one process (the insert path alone: one multi-row
   INSERT ... ON CONFLICT DO NOTHING RETURNING and one rollup upsert per batch);
2. ingest through ``POST /api/usage/events`` served by gunicorn (workers = cores), one sender
   per worker, batches of 1,000 with fresh ids (JSON parsing, checks, token, commit included);
3. the subscription page's p50/p95 and query count for ada, before and after ``--events`` more
   usage records: generated server-side (INSERT ... SELECT generate_series), half of them ada's,
   the rest spread over every subscribed demo user, with the daily rollup built from them by
   one aggregate upsert, as the metering path would have kept it.

The Markdown report goes to bench/results/metering.md and to stdout. Timings live here, never in tests.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import timedelta

from bench.run import RESULTS, Server, database_env, latency, psql, run, sign_in

DATABASE = "bench_metering"
BATCH = 1_000
CHUNK = 1_000_000  # generated rows per INSERT ... SELECT, so progress shows and no statement runs for long
METRICS = ("input_tokens", "output_tokens", "requests")
PAGE = "/account/subscription"


class PatientServer(Server):
    """The benchmark's gunicorn, given longer to start on a machine busy with the bulk load's aftermath."""

    startup_seconds = 300


def prepare(reuse: bool) -> None:
    env = database_env(DATABASE)
    if reuse and psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") == "1":
        return
    psql(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{DATABASE}"')
    flask = [sys.executable, "-m", "flask"]
    run(flask + ["db", "upgrade"], env)
    run(flask + ["seed", "demo"], env)
    psql("VACUUM ANALYZE", database=DATABASE)


def new_token(database: str = DATABASE) -> str:
    out = run([sys.executable, "-m", "flask", "metering", "create-token", f"bench-{uuid.uuid4().hex[:8]}"],
              database_env(database)).stdout
    return out.strip().splitlines()[-1]


def subscribed_users(database: str = DATABASE) -> list[int]:
    return [int(row) for row in psql(
        "SELECT user_id FROM user_subscriptions WHERE status IN ('trialing', 'active', 'past_due') ORDER BY user_id",
        database=database).splitlines()]


def batches(users: list[int], count: int, now_iso: str, database: str = DATABASE) -> list[list[dict]]:
    """``count`` batches of BATCH events with fresh ids, over ``users`` and the three API metrics."""
    run_id = uuid.uuid4().hex[:12]
    model = int(psql("SELECT min(id) FROM models", database=database))
    return [[{"id": f"b-{run_id}-{b}-{n}", "user_id": users[(b * BATCH + n) % len(users)], "model": model,
              "metric": METRICS[n % 3], "quantity": 1 + n % 50, "occurred_at": now_iso} for n in range(BATCH)]
            for b in range(count)]


def service_ingest(users: list[int], count: int) -> float:
    """Events per second through record_usage in this process, one commit per batch."""
    os.environ.update(database_env(DATABASE))
    from webapp import create_app

    app = create_app()  # first: the domains import each other once the app has registered them
    from webapp.db import utcnow
    from webapp.extensions import db
    from webapp.metering.services import UsageEvent, record_usage

    with app.app_context():
        now = utcnow()
        prepared = [[UsageEvent(e["id"], e["user_id"], e["metric"], e["quantity"], now, e["model"]) for e in batch]
                    for batch in batches(users, count, now.isoformat())]
        record_usage(prepared.pop(), now)  # warm-up: compiled statements, pool
        db.session.commit()
        start = time.perf_counter()
        for batch in prepared:
            result = record_usage(batch, now)
            db.session.commit()
            assert result.accepted == BATCH, result
        elapsed = time.perf_counter() - start
        db.engine.dispose()
    return len(prepared) * BATCH / elapsed


def api_ingest(server: Server, token: str, users: list[int], count: int, senders: int,
               database: str = DATABASE) -> tuple[float, list[float]]:
    """Events per second through the HTTP API with ``senders`` keep-alive connections; per-batch latencies (ms)."""
    from datetime import datetime, timezone

    now_iso = datetime.now(timezone.utc).isoformat()
    bodies = [json.dumps({"events": batch}) for batch in batches(users, count + senders, now_iso, database)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    timings: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def send(mine: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        for body in mine:
            started = time.perf_counter()
            conn.request("POST", "/api/usage/events", body=body, headers=headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            with lock:
                timings.append((time.perf_counter() - started) * 1000)
                if response.status != 200 or answer.get("accepted") != BATCH:
                    errors.append(f"{response.status} {str(answer)[:200]}")
        conn.close()

    warm, bodies = bodies[:senders], bodies[senders:]
    threads = [threading.Thread(target=send, args=([body],)) for body in warm]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings.clear()
    shares = [bodies[i::senders] for i in range(senders)]
    start = time.perf_counter()
    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} batches failed, e.g. {errors[0]}")
    return len(bodies) * BATCH / elapsed, timings


def page_timing(server: Server, requests: int) -> tuple[float, float, int | None]:
    cookie = sign_in(server, "ada@demo.test")
    timings, queries = latency(server, PAGE, {"Cookie": cookie}, requests)
    ordered = sorted(timings)
    return statistics.median(timings), ordered[int(len(ordered) * 0.95) - 1], queries


def bulk_load(events: int) -> float:
    """``events`` usage records written server-side (half ada's) and their rollup; seconds taken."""
    ada = psql("SELECT id FROM users WHERE email = 'ada@demo.test'", database=DATABASE)
    started = time.perf_counter()
    done = 0
    while done < events:
        size = min(CHUNK, events - done)
        psql(f"""
            WITH live AS (
                SELECT row_number() OVER (ORDER BY user_id) - 1 AS k, user_id, id AS subscription_id,
                       greatest(current_period_start, now() - interval '25 days') AS since
                FROM user_subscriptions WHERE status IN ('trialing', 'active', 'past_due')
            ), n AS (SELECT count(*) AS users FROM live)
            INSERT INTO usage_records (user_id, subscription_id, model_id, metric, quantity, occurred_at, event_id,
                                       created_at, updated_at, lock_version)
            SELECT live.user_id, live.subscription_id, NULL, (ARRAY['input_tokens','output_tokens','requests'])[1 + g % 3],
                   1 + g % 50, live.since + random() * (now() - interval '1 minute' - live.since),
                   'bulk-' || g, now(), now(), 1
            FROM generate_series({done + 1}, {done + size}) AS g, n
            JOIN live ON TRUE
            WHERE live.k = CASE WHEN g % 2 = 0 THEN (SELECT k FROM live WHERE user_id = {ada}) ELSE (g / 2) % n.users END
        """, database=DATABASE)
        psql(f"""
            INSERT INTO usage_rollups (user_id, day, starts_at, metric, quantity, created_at, updated_at, lock_version)
            SELECT r.user_id, (slice AT TIME ZONE 'UTC')::date, slice, r.metric, sum(r.quantity), now(), now(), 1
            FROM usage_records r
            JOIN user_subscriptions s ON s.user_id = r.user_id AND s.status IN ('trialing', 'active', 'past_due'),
            LATERAL (SELECT greatest(date_trunc('day', r.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                                     CASE WHEN r.occurred_at >= s.current_period_start
                                          THEN s.current_period_start END) AS slice) sliced
            WHERE r.event_id LIKE 'bulk-%' AND r.id > (SELECT coalesce(max(id), 0) - {size} FROM usage_records)
            GROUP BY r.user_id, slice, r.metric
            ON CONFLICT (user_id, starts_at, metric)
            DO UPDATE SET quantity = usage_rollups.quantity + excluded.quantity, updated_at = now()
        """, database=DATABASE)
        done += size
        print(f"   {done:>12,} events loaded ({time.perf_counter() - started:.0f} s)", flush=True)
    psql("VACUUM ANALYZE usage_records", database=DATABASE)
    psql("VACUUM ANALYZE usage_rollups", database=DATABASE)
    return time.perf_counter() - started


def verify() -> str:
    out = run([sys.executable, "-m", "flask", "metering", "verify"], database_env(DATABASE)).stdout
    return out.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Metering ingest speed and the subscription page at 10M events.")
    parser.add_argument("--events", type=int, default=10_000_000, help="usage records loaded between the page runs")
    parser.add_argument("--batches", type=int, default=60, help="batches of 1,000 per ingest measurement")
    parser.add_argument("--requests", type=int, default=60, help="sequential requests for the page's p50/p95")
    parser.add_argument("--reuse", action="store_true", help="reuse the benchmark database if it exists")
    args = parser.parse_args(argv)
    senders = os.cpu_count() or 2

    print(f"== preparing {DATABASE}", flush=True)
    prepare(args.reuse)
    users = subscribed_users()
    records_before = int(psql("SELECT count(*) FROM usage_records", database=DATABASE))
    print(f"== ingest through record_usage ({args.batches} batches of {BATCH:,})", flush=True)
    service_rate = service_ingest(users, args.batches)
    print(f"   {service_rate:,.0f} events/s", flush=True)
    token = new_token()
    with PatientServer(DATABASE) as server:
        print(f"== ingest through POST /api/usage/events ({senders} senders)", flush=True)
        api_rate, batch_ms = api_ingest(server, token, users, args.batches, senders)
        print(f"   {api_rate:,.0f} events/s; batch p50 {statistics.median(batch_ms):.0f} ms", flush=True)
        print("== subscription page before the load", flush=True)
        before = page_timing(server, args.requests)
    print(f"== loading {args.events:,} events", flush=True)
    load_seconds = bulk_load(args.events)
    with PatientServer(DATABASE) as server:
        print("== subscription page after the load", flush=True)
        after = page_timing(server, args.requests)
    records_after = int(psql("SELECT count(*) FROM usage_records", database=DATABASE))
    ada_records = int(psql("SELECT count(*) FROM usage_records r JOIN users u ON u.id = r.user_id "
                           "WHERE u.email = 'ada@demo.test'", database=DATABASE))
    rollup_rows = int(psql("SELECT count(*) FROM usage_rollups", database=DATABASE))
    check = verify()

    report = "\n".join([
        "# Metering benchmark",
        "",
        f"PostgreSQL on loopback, {os.cpu_count()} cores shared with other work; gunicorn with {senders} workers.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| ingest, `record_usage` in one process, batches of {BATCH:,} | {service_rate:,.0f} events/s | |",
        f"| ingest, `POST /api/usage/events`, {senders} senders, batches of {BATCH:,} | {api_rate:,.0f} events/s "
        f"(batch p50 {statistics.median(batch_ms):.0f} ms) | ≥ 20,000 events/s |",
        f"| subscription page (ada), {records_before:,} usage records | p50 {before[0]:.1f} ms, p95 {before[1]:.1f} ms, "
        f"{before[2]} queries | |",
        f"| subscription page (ada), {records_after:,} usage records ({ada_records:,} hers) | p50 {after[0]:.1f} ms, "
        f"p95 {after[1]:.1f} ms, {after[2]} queries | unchanged |",
        f"| p50 after / before | {after[0] / before[0]:.2f} | ≈ 1 |",
        f"| bulk load of {args.events:,} events and their rollup (server-side) | {timedelta(seconds=int(load_seconds))} | |",
        f"| rollup rows after the load | {rollup_rows:,} | |",
        f"| `flask metering verify` after the load | {check} | no mismatch |",
        "",
    ])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metering.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
