"""What the domains' maintenance commands share (webapp.cli)."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from webapp.cli import verify_and_repair
from webapp.extensions import db


@pytest.mark.postgres_only
def test_a_check_over_whole_tables_runs_past_the_web_statement_timeout(db_session, capsys):
    db.session.execute(text("SET LOCAL statement_timeout = 50"))  # as a web request's 4 s, scaled down

    def slow_find() -> list:
        db.session.execute(text("SELECT pg_sleep(0.2)"))  # as `metering verify` over 10M usage records
        return []

    verify_and_repair(slow_find, str, "All good.", "row(s)", repair=False, mend=print)
    assert capsys.readouterr().out == "All good.\n"
