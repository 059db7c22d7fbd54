"""The console served by gunicorn with the repo's gunicorn.conf.py, and a cookie-keeping client for it."""
from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.factories import PASSWORD

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pids(master: int) -> set[int]:
    return set(map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split()))


class Browser:
    """A cookie-keeping HTTP client that answers 4xx/5xx like any other status."""

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

    def csrf_token(self) -> str:
        return CSRF_FIELD.search(self.open("/login")[2]).group(1)

    def sign_in(self, email: str, password: str = PASSWORD) -> int:
        return self.open("/login", {"csrf_token": self.csrf_token(), "email": email, "password": password})[0]


class Gunicorn:
    """``with Gunicorn(env, tmp_path) as server: Browser(server.url)``: gunicorn -c gunicorn.conf.py app:app."""

    def __init__(self, env: dict[str, str], tmp_path, *options: str, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ, "SECRET_KEY": "served-test-secret", "INSTANCE_PATH": str(tmp_path / "instance"),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers), "BASE_URL": self.url,
            **env,
        }
        # --preload: the app is imported once and forked, which starts (and restarts) workers quickly.
        self.command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--preload", *options, "app:app"]
        self.output = ""

    def __enter__(self) -> Gunicorn:
        self.process = subprocess.Popen(self.command, cwd=PROJECT_ROOT, env=self.env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        browser = Browser(self.url)
        for _ in range(300):
            try:
                if browser.open("/login")[0] == 200 and len(worker_pids(self.process.pid)) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        pytest.fail(f"gunicorn did not start:\n{self.output}")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.output = self.process.communicate(timeout=30)[0].decode()

    def workers_now(self) -> set[int]:
        return worker_pids(self.process.pid)
