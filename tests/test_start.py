"""`minion-console` on a fresh SQLite instance: schema, demo data, web server, and a worker that runs the demo's job."""
from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from webapp.seed.demo import FIRST_JOB_NAME

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def job_status(database: Path) -> str | None:
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            row = connection.execute("SELECT status FROM training_jobs WHERE name = ?", (FIRST_JOB_NAME,)).fetchone()
    except sqlite3.OperationalError:  # the schema is still being built
        return None
    return row[0] if row else None


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_fresh_start_serves_the_console_and_its_worker_runs_the_demo_job(tmp_path):
    port, instance = free_port(), tmp_path / "instance"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATABASE_URL", "CELERY_", "JOB_", "ARTIFACT_STORE_URL", "EMBEDDED_WORKER"))}
    env.update(INSTANCE_PATH=str(instance), DEMO_PASSWORD="demo-password-123", JOB_SWEEP_SECONDS="2")
    log = (tmp_path / "console.log").open("wb")
    console = subprocess.Popen([sys.executable, "-m", "webapp.start", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status != "succeeded":
            assert console.poll() is None, (tmp_path / "console.log").read_text()[-3000:]
            time.sleep(0.2)
            status = job_status(instance / "minion-console.sqlite3")
        assert status == "succeeded", (tmp_path / "console.log").read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            assert response.status == 200
        assert (instance / "celery-broker" / "queue").is_dir(), "the embedded broker is the filesystem transport"
        worker_groups = {os.getpgid(int(pid)) for pid in subprocess.run(
            # Not "celery -A ...": with setproctitle installed (mutmut brings it) Celery renames its
            # processes "[celeryd: ...] (-A webapp.worker worker ...)".
            ["pgrep", "-f", f"webapp.worker worker --beat --schedule {instance}"],
            capture_output=True, text=True).stdout.split()}
        assert worker_groups
    finally:
        console.send_signal(signal.SIGTERM)
        console.wait(45)
    # The server took its worker (and the worker its pool and beat) down with it.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(process_group_alive(group) for group in worker_groups):
        time.sleep(0.5)
    assert not [group for group in worker_groups if process_group_alive(group)]
