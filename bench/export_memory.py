"""Peak memory of exporting N usage_records as CSV through the admin, in a fresh process.

    python -m bench.export_memory DATABASE_NAME ROWS

Prints one JSON line: rows exported and peak RSS before and after. Run once per
size; the growth between sizes shows whether the export streams or loads whole.
"""
from __future__ import annotations

import json
import os
import resource
import sys

from bench.run import PASSWORD, database_env


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    database, rows = sys.argv[1], int(sys.argv[2])
    os.environ.update(database_env(database))
    from sqlalchemy import text

    from webapp import create_app
    from webapp.extensions import db

    app = create_app({"WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False})
    with app.app_context():
        # The newest ``rows`` records: everything after the (rows+1)-th newest timestamp.
        cutoff = db.session.scalar(text(
            "SELECT occurred_at FROM usage_records ORDER BY occurred_at DESC OFFSET :n LIMIT 1"), {"n": rows})
    client = app.test_client()
    assert client.post("/login", data={"email": "admin@demo.test", "password": PASSWORD}).status_code == 302
    # A small data set (--scale) may hold fewer rows than asked for: then export them all.
    newest = {} if cutoff is None else {"flt0_occurred_at_greater_than": cutoff.strftime("%Y-%m-%d %H:%M:%S")}
    before = peak_rss_mb()
    response = client.get("/admin/usage_records/export/csv/", query_string=newest, buffered=False)
    exported = sum(chunk.count(b"\n") for chunk in response.response) - 1  # minus the header line
    print(json.dumps({"rows": exported, "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak_rss_mb(), 1)}))


if __name__ == "__main__":
    main()
