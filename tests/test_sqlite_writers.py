"""The embedded SQLite default with a worker beside the web server: a request that reads and then
writes must wait for the worker's write, not fail at once with "database is locked" (a 503)."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import select, text

from tests.conftest import app_of_its_own
from webapp.accounts.models import User
from webapp.database import write_transaction
from webapp.extensions import db


@pytest.fixture(scope="module")
def file_app(tmp_path_factory):
    with app_of_its_own("sqlite", tmp_path_factory.mktemp("writers")) as app:
        with app.app_context():
            db.session.execute(text("INSERT INTO roles (name, description) VALUES ('probe', '')"))
            db.session.commit()
        yield app


def worker_writes_meanwhile(app) -> threading.Thread:
    """Another process's connection writing and committing now (waiting up to 10 s for the lock)."""
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")

    def write():
        other = sqlite3.connect(path, timeout=10, isolation_level=None)
        other.execute("UPDATE roles SET description = description || ' worker' WHERE name = 'probe'")
        other.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(timeout=2)  # the worker has committed, or is still waiting for the lock the request holds
    return thread


def read_then_write_after_the_worker(app) -> None:
    db.session.scalars(select(User.id)).all()  # the read that starts the transaction
    worker = worker_writes_meanwhile(app)
    db.session.execute(text("UPDATE roles SET description = description || ' request' WHERE name = 'probe'"))
    db.session.commit()
    worker.join()


def test_a_request_that_changes_things_holds_the_write_lock_from_its_start(file_app):
    with file_app.test_request_context("/signup", method="POST"):
        read_then_write_after_the_worker(file_app)
    with file_app.app_context():
        assert db.session.scalar(text("SELECT description FROM roles WHERE name = 'probe'")).endswith(
            "request worker"), "the worker waited for the request"


def test_a_write_from_a_reading_request_goes_through_write_transaction(file_app):
    with file_app.test_request_context("/", method="GET"):
        write_transaction(lambda: read_then_write_after_the_worker(file_app))
    with file_app.app_context():
        assert db.session.scalar(text("SELECT description FROM roles WHERE name = 'probe'")).endswith(
            "request worker"), "the worker waited for the request"


def test_without_the_lock_a_reading_transaction_cannot_write_after_the_worker(file_app):
    """Why the two above matter: the failure they prevent, shown on a plain deferred transaction."""
    with file_app.test_request_context("/", method="GET"), pytest.raises(Exception, match="database is locked"):
        try:
            read_then_write_after_the_worker(file_app)
        finally:
            db.session.rollback()
