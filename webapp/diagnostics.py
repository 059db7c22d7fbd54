"""Optional X-Query-Count response header, so benchmarks can read SQL queries per request.

Off unless QUERY_COUNT_HEADER is set: it costs one counter per statement.
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Flask, g, has_app_context

from webapp.extensions import db


def _count_statement(*_args) -> None:
    if has_app_context():
        g.query_count = g.get("query_count", 0) + 1


def _add_header(response):
    response.headers["X-Query-Count"] = str(g.get("query_count", 0))
    return response


def init_app(app: Flask) -> None:
    if not app.config.get("QUERY_COUNT_HEADER"):
        return
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", _count_statement)
    app.after_request(_add_header)
