"""Rate limits across worker processes: one count in Redis, and a warning for per-process counters."""
from __future__ import annotations

import logging
import uuid

import pytest

from tests.conftest import make_test_app
from tests.served import Browser, Gunicorn
from webapp import create_app

REDIS_URL = "redis://127.0.0.1:6379/0"
LIMIT = 4
ATTEMPTS = 10


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own, and its keys removed afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(f"*{prefix}*"):
        client.delete(key)


@pytest.mark.parametrize("storage, refused", [(REDIS_URL, ATTEMPTS - LIMIT), ("memory://", 0)])
def test_worker_processes_share_one_count_in_redis(tmp_path, redis_prefix, storage, refused):
    """Workers are replaced every two requests (--max-requests): only a shared store remembers the count."""
    app = make_test_app("sqlite", tmp_path)
    env = {"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "RATELIMIT_STORAGE_URI": storage,
           "RATELIMIT_KEY_PREFIX": redis_prefix, "AUTH_RATE_LIMIT": f"{LIMIT} per minute"}
    with Gunicorn(env, tmp_path, "--max-requests", "2") as server:
        browser = Browser(server.url)
        token = browser.csrf_token()
        statuses = [browser.open("/login", {"csrf_token": token, "email": "nobody@example.test",
                                            "password": "not the password"})[0] for _ in range(ATTEMPTS)]
    assert statuses.count(429) == refused and statuses.count(200) == ATTEMPTS - refused, statuses
    split_warning = "memory:// with 2 worker processes" in server.output
    assert split_warning is storage.startswith("memory://")


@pytest.mark.parametrize("storage, workers, warned", [
    ("memory://", "4", True), ("memory://", "1", False), (REDIS_URL, "4", False),
])
def test_start_up_warns_when_workers_would_count_alone(monkeypatch, caplog, storage, workers, warned):
    monkeypatch.setenv("WEB_CONCURRENCY", workers)
    with caplog.at_level(logging.WARNING):
        create_app({"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": "sqlite://",
                    "RATELIMIT_STORAGE_URI": storage})
    assert ("each counts alone" in caplog.text) is warned
