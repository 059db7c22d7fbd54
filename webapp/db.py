"""Declarative base, shared column types and mixins for every model."""
from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from flask import has_request_context, request
from sqlalchemy import CheckConstraint, MetaData, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry
from sqlalchemy.types import TypeDecorator

# One convention so constraint names are identical on SQLite and PostgreSQL and
# migrations can drop them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- aggregates both databases have under different names ----------------------------------


def dialect_function(name: str, result_type: Any, on_postgresql: str, on_sqlite: str, doc: str) -> type:
    """A SQL function both databases have under different names; ``{}`` in each template takes the arguments."""
    element = type(name, (FunctionElement,), {"type": result_type, "inherit_cache": True, "__doc__": doc})
    for dialect, template in (("postgresql", on_postgresql), ("sqlite", on_sqlite)):
        compiles(element, dialect)(
            lambda function, compiler, template=template, **kw: template.format(compiler.process(function.clauses, **kw)))
    return element


joined_codes = dialect_function(
    "joined_codes", sa.String(), "string_agg({}, ' ')", "group_concat({}, ' ')",
    "An aggregate: the group's codes in one space-separated string (codes have no spaces).")
json_object = dialect_function(
    "json_object", sa.JSON(), "json_build_object({})", "json_object({})",
    "A JSON object from alternating names and values.")
json_array_agg = dialect_function(
    "json_array_agg", sa.JSON(), "coalesce(json_agg({}), '[]'::json)", "json_group_array({})",
    "An aggregate: the group's JSON values as one JSON array (empty, not NULL, for no rows).")
nested_json = dialect_function(
    "nested_json", sa.JSON(), "{}", "json({})",
    "A JSON column's value as JSON inside another JSON document (SQLite would put its text there as a string).")
utc_day = dialect_function(
    "utc_day", sa.Date(), "CAST(({} AT TIME ZONE 'UTC') AS date)", "date({})",
    "A timestamp's UTC calendar day (SQLite keeps timestamps as UTC text); YYYY-MM-DD inside JSON on both. A cast,"
    " not to_char: the rollup check groups 10M records by it within the statement timeout.")


def json_rows(statement: sa.Select, *order_by: Any) -> sa.ScalarSelect:
    """``statement``'s rows (ordered by ``order_by``) as a JSON array of objects keyed by column name, as one
    scalar subquery: a page gets several short lists in one round trip. Read it back with :func:`rows_of`
    (a JSON column's value comes back as itself, a timestamp as text for :func:`timestamp_of`)."""
    numbered = statement.add_columns(func.row_number().over(order_by=order_by).label("position")).order_by(*order_by)
    rows = numbered.subquery()
    pairs = [part for column in rows.c
             for part in (sa.literal(column.key), nested_json(column) if isinstance(column.type, sa.JSON) else column)]
    return sa.select(json_array_agg(json_object(*pairs))).select_from(rows).scalar_subquery()


def rows_of(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A :func:`json_rows` value in its rows' order (an aggregate does not promise to keep it)."""
    return sorted(value, key=lambda row: row["position"])


def dataclass_of(kind: type, row: dict[str, Any]) -> Any:
    """A JSON row as an instance of the dataclass ``kind``, from the row's values of its fields (the row may hold more)."""
    return kind(**{field.name: row[field.name] for field in fields(kind)})


def timestamp_of(value: str | None) -> datetime | None:
    """A timestamp of a :func:`json_rows` row, as aware UTC: SQLite's text is UTC without an offset,
    PostgreSQL's carries the session's."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def record_columns(model: type) -> list[Any]:
    """``model``'s columns, each named by its attribute: a :func:`json_rows` statement :func:`records_of` reads."""
    return [attribute.columns[0].label(attribute.key) for attribute in sa.inspect(model).column_attrs]


def records_of(model: type, value: list[dict[str, Any]]) -> list[Any]:
    """A :func:`json_rows` value of :func:`record_columns` as instances of ``model`` to read, never to add to a
    session, each value of its column's Python type (JSON spells a time as text, and SQLite a boolean as 0 or 1)."""
    attributes = sa.inspect(model).column_attrs
    return [model(**{attribute.key: from_json(attribute.columns[0].type, row[attribute.key])
                     for attribute in attributes})
            for row in rows_of(value)]


def from_json(kind: sa.types.TypeEngine, value: Any) -> Any:
    """A column's value as :func:`json_rows` spelled it, as the column's Python type."""
    if value is None:
        return None
    if isinstance(kind, UTCDateTime):
        return timestamp_of(value)
    if isinstance(kind, sa.Boolean):
        return bool(value)
    return value


def escape_like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern written with ``escape="\\"``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC timestamps on both databases.

    SQLite has no timezone type and hands back naive values; this normalises
    everything to aware UTC on the way in and on the way out.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # Stored without offset so that text comparisons with CURRENT_TIMESTAMP hold.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSONB on PostgreSQL so configs can be queried and indexed; JSON elsewhere.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    # An explicit registry: with Flask-SQLAlchemy 3.1 a type_annotation_map on
    # the Base class itself fails at import (flask-sqlalchemy issue 1361).
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType},
    )


class TimestampMixin:
    """Integer id, created_at/updated_at and the optimistic-locking lock_version column."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    # Checked on every ORM UPDATE/DELETE: a concurrent edit raises StaleDataError
    # instead of silently overwriting the other writer's change.
    lock_version: Mapped[int] = mapped_column(default=1, server_default="1")

    @sa.orm.declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.lock_version}


def choice_check(column: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    """CHECK constraint that keeps a string enumeration column within its values."""
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or f"{column}_valid")


def non_negative(column: str) -> CheckConstraint:
    return CheckConstraint(f"{column} >= 0", name=f"{column}_non_negative")


def fk(target: str, ondelete: str, **kwargs: Any) -> sa.ForeignKey:
    """A foreign key with its ON DELETE always spelled out."""
    return sa.ForeignKey(target, ondelete=ondelete, **kwargs)


def trigram_index(column: Any) -> sa.Index:
    """A GIN trigram index on lower(column): it serves the admin's search, lower(column) LIKE '%term%'.

    PostgreSQL only (the migration creates it there); autogenerate skips expression indexes on SQLite.
    """
    label = f"{column.key}_lower"
    return sa.Index(
        f"ix_{column.table.name}_{column.key}_trgm",
        func.lower(column).label(label),
        postgresql_using="gin",
        postgresql_ops={label: "gin_trgm_ops"},
    )


class ValueOutOfRange(ValueError):
    """A value its column cannot hold, found before the database sees it; the message names the field."""


INTEGER_RANGES = {sa.SmallInteger: 2**15, sa.BigInteger: 2**63, sa.Integer: 2**31}


def column_problem(column: sa.Column, value: Any) -> str | None:
    """Why ``value`` does not fit ``column`` (length, integer range), or None."""
    kind = column.type
    if isinstance(value, str) and isinstance(kind, sa.String) and kind.length and len(value) > kind.length:
        return f"{column.key} is {len(value)} characters long; at most {kind.length} fit."
    if isinstance(value, int) and not isinstance(value, bool) and isinstance(kind, sa.Integer):
        bound = next(b for t, b in INTEGER_RANGES.items() if isinstance(kind, t))
        if not -bound <= value < bound:
            return f"{column.key} is out of range for a whole number column."
    return None


@sa.event.listens_for(sa.orm.Session, "before_flush")
def _check_column_values(session, _context, _instances) -> None:
    """Lengths and integer ranges checked on both databases (SQLite would store anything)."""
    for instance in list(session.new) + list(session.dirty):
        mapper = sa.inspect(instance).mapper
        for attribute in mapper.column_attrs:
            column = attribute.columns[0]
            problem = column_problem(column, instance.__dict__.get(attribute.key))
            if problem:
                raise ValueOutOfRange(f"{mapper.class_.__name__} {problem}")


@sa.event.listens_for(sa.engine.Engine, "connect")
def _configure_sqlite(dbapi_connection, _record) -> None:
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    # pysqlite opens transactions on its own and breaks SAVEPOINT; let SQLAlchemy
    # emit BEGIN itself (the workaround in SQLAlchemy's SQLite dialect docs).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # SQLite ignores foreign keys (and so ON DELETE) unless asked on every connection;
    # WAL and a busy timeout let the dev server's threads share the file.
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


@sa.event.listens_for(sa.engine.Engine, "begin")
def _sqlite_begin(connection) -> None:
    if connection.dialect.name == "sqlite":
        # A transaction that will write after reading asks for the write lock up front: a deferred
        # one fails at once, busy timeout or not, if another process (the worker) wrote in between.
        # Every transaction of a request that may change things does; other work asks through
        # webapp.database.write_transaction.
        immediate = connection.get_execution_options().get(SQLITE_BEGIN_IMMEDIATE) or (
            has_request_context() and request.method not in SAFE_METHODS)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


SQLITE_BEGIN_IMMEDIATE = "sqlite_begin_immediate"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
