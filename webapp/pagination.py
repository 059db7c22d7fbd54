"""Offset pagination without COUNT(*): one extra row tells whether a next page exists."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, request
from sqlalchemy import Select

from webapp.extensions import db

MAX_PAGE_SIZE = 100


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    has_next: bool

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    # Deliberately unknown: counting every row of a large table is what makes lists slow.
    pages = None


def page_args() -> tuple[int, int]:
    """(page, per_page) from the query string, clamped to sane bounds."""
    page = request.args.get("page", 1, type=int) or 1
    per_page = request.args.get("per_page", current_app.config["PAGE_SIZE"], type=int) or 1
    return max(page, 1), min(max(per_page, 1), MAX_PAGE_SIZE)


def paginate(statement: Select, page: int, per_page: int, scalars: bool = True) -> Page:
    """Run ``statement`` (already ordered, with a unique tie-breaker) for one page."""
    limited = page_slice(statement, page, per_page)
    return page_of(list(db.session.scalars(limited) if scalars else db.session.execute(limited)), page, per_page)


def page_slice(statement: Select, page: int, per_page: int) -> Select:
    """``statement`` limited to the page's rows and one more, which tells whether a next page exists."""
    return statement.limit(per_page + 1).offset((page - 1) * per_page)


def page_of(rows: list[Any], page: int, per_page: int) -> Page:
    """The page of ``rows`` read through :func:`page_slice`."""
    return Page(items=rows[:per_page], page=page, per_page=per_page, has_next=len(rows) > per_page)
