"""Data for development and benchmarks: ``seed_demo`` (small, every table) and ``seed_scale`` (bulk)."""
from __future__ import annotations

import sqlalchemy as sa

from webapp.extensions import db


class SeedError(RuntimeError):
    """The database is not in a state this seed can build on."""


def row_counts() -> dict[str, int]:
    """Rows per table of the schema, in dependency order."""
    return {
        table.name: db.session.scalar(sa.select(sa.func.count()).select_from(table))
        for table in db.metadata.sorted_tables
    }
