"""A stalled database: a 503 with Retry-After within the configured time, and the workers live on.

A TCP proxy between the app and PostgreSQL stops forwarding bytes (tests/stall_proxy.py):
the server's statement_timeout cannot help there, only the client's own deadlines can.
"""
from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_DATABASE_URL, make_test_app
from tests.factories import PASSWORD, make_user
from tests.stall_proxy import StallProxy
from webapp.extensions import db

pytestmark = pytest.mark.postgres_only
PROJECT_ROOT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def through_proxy(url: str, port: int) -> str:
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@pytest.fixture
def stalled_setup(backend, tmp_path):
    """A migrated database with one user, and a StallProxy in front of PostgreSQL."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    app = make_test_app(backend, tmp_path, suffix="_stall")
    with app.app_context():
        email = make_user(email="stall@example.test").email
        db.session.commit()
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        db.engine.dispose()
    port = sa.make_url(url).port or 5432
    with StallProxy(port) as proxy:
        yield proxy, url, email


class Browser:
    """A cookie-keeping HTTP client that never raises on 4xx/5xx."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def open(self, path: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.base + path, body, timeout=60) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def sign_in(self, email: str) -> None:
        _, _, page = self.open("/login")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
        status, _, _ = self.open("/login", {"csrf_token": token.group(1) or token.group(2), "email": email,
                                            "password": PASSWORD})
        assert status == 200 and self.open("/")[0] == 200


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def worker_pids(master: int) -> set[int]:
    return set(map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split()))


def test_a_stalled_database_gets_a_quick_503_from_gunicorn_and_the_workers_live_on(stalled_setup, tmp_path):
    proxy, url, email = stalled_setup
    port = free_port()
    env = {
        **os.environ, **TIMEOUTS,
        "DATABASE_URL": through_proxy(url, proxy.port).replace("postgresql+psycopg://", "postgresql://"),
        "SECRET_KEY": "stall-test-secret", "INSTANCE_PATH": str(tmp_path / "instance"),
        "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "BASE_URL": f"http://127.0.0.1:{port}",
    }
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--preload", "app:app"],
                              cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        browser = Browser(f"http://127.0.0.1:{port}")
        for _ in range(150):
            try:
                if browser.open("/login")[0] == 200 and len(worker_pids(server.pid)) == 2:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start")
        browser.sign_in(email)
        workers = worker_pids(server.pid)

        proxy.stall()
        # Pooled connections hit the answer timeout; new ones the connect timeout. Both workers are asked.
        for _ in range(4):
            (status, headers, page), seconds = timed(lambda: browser.open("/"))
            assert status == 503 and headers["Retry-After"] and "cannot be reached" in page
            assert seconds < BOUND, f"the 503 took {seconds:.1f} s"

        proxy.resume()
        assert [browser.open("/")[0] for _ in range(4)] == [200] * 4, "the same workers answer again"
        assert worker_pids(server.pid) == workers, "no worker was killed or replaced"
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "WORKER TIMEOUT" not in output


def test_a_statement_over_the_timeout_is_cancelled_with_a_503(backend, tmp_path):
    """The server-side bound: a slow statement (not a stalled link) is cancelled by PostgreSQL."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
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
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
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
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    app = make_test_app(backend, tmp_path, suffix="_stall", DATABASE_LOCK_TIMEOUT_MS=1234,
                        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS=45678, DATABASE_STATEMENT_TIMEOUT_MS=2345)
    with app.app_context():
        settings = dict(db.session.execute(sa.text(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('lock_timeout', 'idle_in_transaction_session_timeout', 'statement_timeout')")).all())
        db.engine.dispose()
    assert settings == {"lock_timeout": "1234", "idle_in_transaction_session_timeout": "45678",
                        "statement_timeout": "2345"}
    assert TEST_DATABASE_URL
