"""Keyset paging for the admin's lists: "next" and "previous" carry the boundary row's sort key.

A list sorted by ``created_at DESC`` (then ``id DESC``, see SecureModelView._apply_sorting) links
its next page as ``?page=7&after=2026-12-01T08:25:00.123456+00:00,4711`` and reads it as
``WHERE (created_at, id) < (:value, :id) ORDER BY created_at DESC, id DESC LIMIT 20``: a range
scan of the (created_at, id) index that starts at the key, so page 50,000 costs what page 1
costs. "previous" reads the other way from the first row's key (``before=``) and the rows are
put back in the list's order.

Only an order an index serves that way is paged by key: a NOT NULL column of the model's own
table whose type the key can spell (a time, a whole number or a text), with an index that starts
with (that column, id), or the id itself. Any other order (a nullable or unindexed column, a
related row's column) keeps offset paging through the late-row lookup; so does a jump to a page
number, whatever the order.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import abort
from sqlalchemy import Column, Table, tuple_
from sqlalchemy.types import TypeDecorator

from webapp.db import column_problem

AFTER, BEFORE = "after", "before"
KEY_TYPES = (datetime, int, str)


@dataclass(frozen=True)
class KeysetOrder:
    """A list's order as keyset paging reads it: (sort column, id), or (id,) alone, in one direction."""

    columns: tuple[Column, ...]
    descending: bool

    def condition(self, values: tuple[Any, ...], forward: bool) -> Any:
        """Rows after the key in the list's order (``forward``), or before it."""
        key, bound = tuple_(*self.columns), tuple_(*values)
        return key < bound if forward == self.descending else key > bound

    def ordering(self, forward: bool) -> list[Any]:
        """The list's order (``forward``), or its reverse, which reads the rows before a key nearest first."""
        descending = self.descending == forward
        return [column.desc() if descending else column.asc() for column in self.columns]

    def key_of(self, row: Any) -> str:
        """The row's key as a query-string value."""
        return ",".join(spelled(getattr(row, column.key)) for column in self.columns)

    def parse(self, name: str, raw: str) -> tuple[Any, ...]:
        """The values of a key from the query string; a 400 naming ``name`` when it is none this order can hold."""
        parts = raw.rsplit(",", len(self.columns) - 1)
        values = [parsed(column, text) for column, text in zip(self.columns, parts)] \
            if len(parts) == len(self.columns) else [None]
        if any(value is None for value in values):
            abort(400, f"{name} is not a position in this list; follow the list's own links.")
        return tuple(values)


def keyset_order(table: Table, column: Column | None, descending: bool) -> KeysetOrder | None:
    """The keyset order for sorting ``table`` by ``column``, or None when only offset paging serves it."""
    if column is None or getattr(column, "table", None) is not table:
        return None
    column, identity = table.c[column.key], table.c.id
    if column is identity:
        return KeysetOrder((identity,), descending)
    if column.nullable or key_type(column) is None:
        return None
    served = any([getattr(c, "name", None) for c in list(index.expressions)[:2]] == [column.name, "id"]
                 for index in table.indexes)
    return KeysetOrder((column, identity), descending) if served else None


def key_type(column: Column) -> type | None:
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return None
    return python_type if python_type in KEY_TYPES else None


def spelled(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def parsed(column: Column, text: str) -> Any:
    """``text`` as a value of ``column``, or None when it is not one (a time needs its UTC offset)."""
    kind = key_type(column)
    try:
        if kind is datetime:
            value = datetime.fromisoformat(text)
            return value.astimezone(timezone.utc) if value.tzinfo is not None else None
        if kind is int:
            value = int(text, 10) if text.isascii() else None
        else:
            value = text
    except (ValueError, OverflowError):  # no such time, or one UTC cannot hold (year 0 or 10000)
        return None
    return None if value is None or column_problem(column, value) else value
