"""Real Celery processes for the engine tests: workers and beat on a real broker (Redis by default).

``TEST_BROKER_URL`` names the broker (``redis://127.0.0.1:6379/0`` unless set; ``amqp://guest:guest@127.0.0.1//``
for RabbitMQ). Each test app gets a queue of its own, so runs sharing the broker never take each other's tasks.
Short leases and sweeps (below) keep the tests fast.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from tests.conftest import app_of_its_own
from webapp.extensions import db

TEST_BROKER_URL = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAST_CLOCK = {"JOB_HEARTBEAT_SECONDS": 0.5, "JOB_LEASE_SECONDS": 4, "JOB_SWEEP_SECONDS": 1,
              "JOB_DISPATCH_TIMEOUT_SECONDS": 3}


def require_broker() -> None:
    try:
        with Connection(TEST_BROKER_URL, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        pytest.skip(f"no broker at {TEST_BROKER_URL}: {error}")


def broker_app(backend: str, tmp_dir, suffix: str, **overrides):
    """``with broker_app(...) as app``: a test app on its own committed database, publishing to the
    test broker on a queue of its own."""
    require_broker()
    return app_of_its_own(backend, tmp_dir, suffix, CELERY_BROKER_URL=TEST_BROKER_URL,
                          CELERY_QUEUE=f"test-{uuid.uuid4().hex[:12]}", **FAST_CLOCK, **overrides)


def process_env(app) -> dict[str, str]:
    """What a worker or beat process needs to serve ``app``'s database, store and queue."""
    config = app.config
    return {
        **os.environ,
        "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "INSTANCE_PATH": app.instance_path,
        "SECRET_KEY": config["SECRET_KEY"], "ARTIFACT_STORE_URL": config["ARTIFACT_STORE_URL"],
        "BASE_URL": config["BASE_URL"], "MAIL_BACKEND": "console",
        "CELERY_BROKER_URL": config["CELERY_BROKER_URL"], "CELERY_QUEUE": config["CELERY_QUEUE"],
        "PROVIDER_KEY_ENCRYPTION_KEYS": config["PROVIDER_KEY_ENCRYPTION_KEYS"],
        **{key: str(value) for key, value in FAST_CLOCK.items()},
    }


class CeleryProcess:
    """``celery -A webapp.worker worker`` (or ``beat``) in its own process group, logging to a file."""

    def __init__(self, app, log_dir, name: str, *args: str) -> None:
        self.log = Path(log_dir) / f"{name}.log"
        self.name = name
        command = [sys.executable, "-m", "celery", "-A", "webapp.worker", *args, "--loglevel", "INFO"]
        self.process = subprocess.Popen(command, env=process_env(app), cwd=PROJECT_ROOT, start_new_session=True,
                                        stdout=self.log.open("wb"), stderr=subprocess.STDOUT)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name} did not log {text!r}:\n{self.log.read_text(errors='replace')[-3000:]}")

    def kill(self) -> None:
        """kill -9 the whole process group: the worker and its pool's children, mid-task."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(app, log_dir, name: str, wait: bool = True) -> CeleryProcess:
    worker = CeleryProcess(app, log_dir, name, "worker", "--hostname", f"{name}@%h", "--concurrency", "2",
                           "--without-mingle", "--without-gossip")
    worker.ready_text = "ready."
    if wait:
        worker.wait_for(worker.ready_text)
    return worker


def start_beat(app, log_dir, wait: bool = True) -> CeleryProcess:
    beat = CeleryProcess(app, log_dir, "beat", "beat", "--schedule", str(Path(log_dir) / "beat-schedule"))
    beat.ready_text = "beat: Starting"
    if wait:
        beat.wait_for(beat.ready_text)
    return beat


def start_together(*starting: CeleryProcess) -> list[CeleryProcess]:
    """Processes started with ``wait=False``, once every one of them is ready (they boot in parallel)."""
    for process in starting:
        process.wait_for(process.ready_text)
    return list(starting)


def stop_together(processes) -> None:
    for process in processes:
        if process.process.poll() is None:
            os.killpg(process.process.pid, signal.SIGTERM)
    for process in processes:
        process.stop()


def wait_until(check, timeout: float = 60, interval: float = 0.3, what: str = "the condition"):
    """Poll ``check`` (run in a fresh session each time) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.remove()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
