"""The benchmark's report from made-up samples: peer columns, shares of the same round's bare endpoint, "no ETag".

Pure rendering; no timing is measured here.
"""
from argparse import Namespace

from bench import peers, run
from bench.paths import PathResult


def samples(*rps: float, note: str = "") -> list[run.Sample]:
    return [run.Sample(p50_ms=10, p95_ms=20, queries=3, rps=r, note=note) for r in rps]


def report(cells: dict, pages: list[run.Target]) -> str:
    runs = {
        "seeds": {"100%": {"sizes": {"users": 10}}}, "cells": cells, "pages": pages,
        "paths": [PathResult("runner reports", "reports/s", 1_000, [800.0, 1_200.0, 1_100.0])],
        "peer_columns": list(peers.COLUMNS),
        "export": {10_000: {"rows": 10_000, "rss_peak_mb": 80.0}, 100_000: {"rows": 100_000, "rss_peak_mb": 90.0}},
    }
    return run.render_report(runs, Namespace(requests=20, duration=2, rounds=2))


def test_report_gives_peer_columns_shares_of_each_rounds_bare_and_no_etag():
    lookup = {"job_id": "1", "minion_id": "2", "leaderboard_deep": "/leaderboard?page=9",
              "admin_pages": [page for admin_list in run.ADMIN_LISTS
                              for page in run.admin_pages(admin_list, lambda sql: "100")]}
    pages = run.targets(lookup)
    cells = {}
    for page in pages:
        note = "no ETag" if page.conditional else ""
        cells[(page.name, run.OURS_SMALL)] = samples(100, 100, note=note)
        cells[(page.name, run.OURS_LARGE)] = samples(100, 100, note=note)
        for column, path in page.peer_paths.items():
            cells[(page.name, column)] = samples(50, 90)
    cells[(run.BARE, run.OURS_LARGE)] = samples(1_000, 500)

    text = report(cells, pages)

    assert "| Django admin | Django admin, no full count | sqladmin (no sign-in) | ours / fastest peer |" in text
    users = next(line for line in text.splitlines() if line.startswith("| admin users: first page |"))
    assert "| 100 (100–100) | 15.0% (10.0%–20.0%) |" in users  # 100 req/s is 10% of round 1's bare, 20% of round 2's
    assert "| 70 (50–90); 11.5% |" in users  # 5% and 18% of the bare endpoint
    assert "| 1.43x |" in users
    assert "| 304 poll: job row | user | no ETag | – |" in text
    assert "- admin users: first page: throughput 1.43x the fastest peer's (target 1.5x)" in text
    assert "| runner reports | 1,100 (800–1,200) reports/s | ≥ 1,000 reports/s |" in text
    deep = next(page for page in pages if page.name == "admin users: deep page")  # 95% of 100 rows: page 4 from 0
    assert deep.path == "/admin/users/?page=4"
    assert deep.peer_paths == {peers.DJANGO: "/admin/peer/user/?p=5", peers.DJANGO_NO_COUNT: "/admin-nocount/peer/user/?p=5",
                               peers.SQLADMIN: "/admin/user/list?page=5"}
