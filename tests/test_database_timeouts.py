"""A stalled database: a 503 with Retry-After within the configured time, and the workers live on.

A TCP proxy between the app and PostgreSQL stops forwarding bytes (tests/stall_proxy.py):
the server's statement_timeout cannot help there, only the client's own deadlines can.
"""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.conftest import make_test_app
from tests.factories import make_user
from tests.served import Browser, Gunicorn
from tests.stall_proxy import StallProxy
from webapp.extensions import db

pytestmark = pytest.mark.postgres_only
ANSWER_TIMEOUT = 1.5
CONNECT_TIMEOUT = 2  # psycopg's smallest
# Timeouts as a user would set them; the test allows generous slack for a loaded machine.
TIMEOUTS = {
    "DATABASE_ANSWER_TIMEOUT_SECONDS": str(ANSWER_TIMEOUT),
    "DATABASE_STATEMENT_TIMEOUT_MS": "1000",
    "DATABASE_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
    "DATABASE_POOL_TIMEOUT_SECONDS": "1",
}
BOUND = max(ANSWER_TIMEOUT, CONNECT_TIMEOUT) + 2.5


def through_proxy(url: str, port: int) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
def stalled_setup(backend, tmp_path):
    """A migrated database with one user, and a StallProxy in front of PostgreSQL."""
    app = make_test_app(backend, tmp_path, suffix="_stall")
    with app.app_context():
        email = make_user(email="stall@example.test").email
        db.session.commit()
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        db.engine.dispose()
    port = sa.make_url(url).port or 5432
    with StallProxy(port) as proxy:
        yield proxy, url, email


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_a_stalled_database_gets_a_quick_503_from_gunicorn_and_the_workers_live_on(stalled_setup, tmp_path):
    proxy, url, email = stalled_setup
    database_url = through_proxy(url, proxy.port).replace("postgresql+psycopg://", "postgresql://")
    with Gunicorn({**TIMEOUTS, "DATABASE_URL": database_url}, tmp_path) as server:
        browser = Browser(server.url)
        assert browser.sign_in(email) == 200 and browser.open("/")[0] == 200
        workers = server.workers_now()

        proxy.stall()
        # Pooled connections hit the answer timeout, new ones the connect timeout; both workers are asked.
        for _ in range(4):
            (status, headers, page), seconds = timed(lambda: browser.open("/"))
            assert status == 503 and headers["Retry-After"] and "cannot be reached" in page
            assert seconds < BOUND, f"the 503 took {seconds:.1f} s"

        proxy.resume()
        assert [browser.open("/")[0] for _ in range(4)] == [200] * 4, "the same workers answer again"
        assert server.workers_now() == workers, "no worker was killed or replaced"
    assert "WORKER TIMEOUT" not in server.output


def test_a_statement_over_the_timeout_is_cancelled_with_a_503(backend, tmp_path):
    """The server-side bound: a slow statement (not a stalled link) is cancelled by PostgreSQL."""
    app = make_test_app(backend, tmp_path, suffix="_stall", DATABASE_STATEMENT_TIMEOUT_MS=300)

    @app.get("/slow-statement")
    def slow_statement():
        db.session.execute(sa.text("SELECT pg_sleep(5)"))
        return "finished"

    (response, seconds) = timed(lambda: app.test_client().get("/slow-statement"))
    assert response.status_code == 503 and response.headers["Retry-After"] and seconds < 3
    assert app.test_client().get("/login").status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.text("SELECT 1")) == 1, "the pool recovered"
        db.engine.dispose()


def test_waiting_for_a_busy_pool_ends_in_a_503(backend, tmp_path):
    app = make_test_app(backend, tmp_path, suffix="_stall", DATABASE_POOL_TIMEOUT_SECONDS=0.5,
                        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})

    @app.get("/needs-a-connection")
    def needs_a_connection():
        db.session.execute(sa.text("SELECT 1"))
        return "ok"

    with app.app_context():
        held = db.engine.connect()
        try:
            response = app.test_client().get("/needs-a-connection")
        finally:
            held.close()
        db.engine.dispose()
    assert response.status_code == 503 and response.headers["Retry-After"]


def test_postgres_connections_carry_the_configured_timeouts(backend, tmp_path):
    app = make_test_app(backend, tmp_path, suffix="_stall", DATABASE_LOCK_TIMEOUT_MS=1234,
                        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS=45678, DATABASE_STATEMENT_TIMEOUT_MS=2345)
    with app.app_context():
        settings = dict(db.session.execute(sa.text(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('lock_timeout', 'idle_in_transaction_session_timeout', 'statement_timeout')")).all())
        db.engine.dispose()
    assert settings == {"lock_timeout": "1234", "idle_in_transaction_session_timeout": "45678",
                        "statement_timeout": "2345"}
