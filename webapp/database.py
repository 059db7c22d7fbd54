"""Bounds on every wait for PostgreSQL, so a stalled database costs a request seconds, not a worker.

The server enforces ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout``; they cannot help when the server (or the network,
or a proxy in between) stops answering altogether, so the client bounds each wait for an
answer too (:class:`AnswerBoundConnection`). Connecting is bounded by ``connect_timeout``,
waiting for a pooled connection by ``pool_timeout``. Every one of these failures reaches
the error handlers as an OperationalError or a pool TimeoutError: a 503 with Retry-After.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import sqlalchemy as sa
from flask import Flask
from psycopg.errors import _WaitTimeout

from webapp.db import SQLITE_BEGIN_IMMEDIATE
from webapp.extensions import db


class AnswerBoundConnection(psycopg.Connection):
    """A psycopg connection that gives up when the server sends no answer within ``answer_timeout``.

    Every exchange of a synchronous psycopg connection (queries, fetches from server-side
    cursors, commit, rollback) goes through ``wait``; its ``timeout`` is one deadline for
    the whole exchange, not one per socket read. On expiry the connection is closed, so
    SQLAlchemy sees a disconnect and throws it out of the pool.
    """

    answer_timeout: float | None = None

    def wait(self, gen, interval=psycopg.connection._WAIT_INTERVAL, timeout=None):
        bound = timeout if timeout is not None else self.answer_timeout
        try:
            return super().wait(gen, interval, bound)
        except _WaitTimeout:
            self.pgconn.finish()
            raise psycopg.OperationalError(f"the database sent no answer within {bound:g} s") from None


def server_options(config) -> str:
    """The session settings every connection starts with (libpq ``options``)."""
    settings = {
        "statement_timeout": config["DATABASE_STATEMENT_TIMEOUT_MS"],
        "lock_timeout": config["DATABASE_LOCK_TIMEOUT_MS"],
        "idle_in_transaction_session_timeout": config["DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS"],
    }
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def engine_options(config) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS with the timeouts for the configured database."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if not config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        return options  # SQLite waits for its file lock through PRAGMA busy_timeout (webapp.db)
    options.setdefault("pool_timeout", config["DATABASE_POOL_TIMEOUT_SECONDS"])
    connect_args = dict(options.get("connect_args") or {})
    connect_args.setdefault("connect_timeout", config["DATABASE_CONNECT_TIMEOUT_SECONDS"])
    connect_args.setdefault("options", server_options(config))
    # A dead peer (cable pulled, host gone) is noticed by the kernel within the answer timeout.
    connect_args.setdefault("keepalives", 1)
    connect_args.setdefault("keepalives_idle", 30)
    connect_args.setdefault("tcp_user_timeout", int(config["DATABASE_ANSWER_TIMEOUT_SECONDS"] * 1000))
    options["connect_args"] = connect_args
    return options


def bound_answers(engine: sa.Engine, answer_timeout: float) -> None:
    """Make ``engine`` open :class:`AnswerBoundConnection` connections bounded by ``answer_timeout``."""

    @sa.event.listens_for(engine, "do_connect")
    def connect(dialect, connection_record, cargs, cparams):
        connection = AnswerBoundConnection.connect(*cargs, **cparams)
        connection.answer_timeout = answer_timeout
        return connection


@contextlib.contextmanager
def unbounded(connection: sa.Connection) -> Iterator[sa.Connection]:
    """Lift the statement and answer timeouts for the rest of ``connection``'s current transaction,
    for long maintenance work (migrations, bulk loads)."""
    if connection.dialect.name != "postgresql":
        yield connection
        return
    raw = connection.connection.dbapi_connection
    bound = getattr(raw, "answer_timeout", None)
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    raw.answer_timeout = None
    try:
        yield connection
    finally:
        raw.answer_timeout = bound


def init_app(app: Flask) -> None:
    """Called before ``db.init_app``: the engine is created with these options."""
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)


def bind_engine(app: Flask) -> None:
    """Called after ``db.init_app``, once the engine exists."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        with app.app_context():
            bound_answers(db.engine, app.config["DATABASE_ANSWER_TIMEOUT_SECONDS"])


def write_transaction(action):
    """Run ``action`` in a transaction of its own that holds the write lock from its start, and commit it.

    On PostgreSQL this is an ordinary transaction (rows are locked where they are written). On
    SQLite, the embedded default, a transaction that reads before it writes fails at once when
    another process (a worker's heartbeat, another request) committed in between; starting with
    BEGIN IMMEDIATE makes concurrent writers wait for each other instead.
    """
    db.session.commit()  # what the request did so far; the action's reads happen under the lock
    db.session.connection(execution_options={SQLITE_BEGIN_IMMEDIATE: True})
    try:
        result = action()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return result
