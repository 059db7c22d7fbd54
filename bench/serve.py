"""A web server process on loopback for a benchmark: started, waited for, requested, stopped."""
from __future__ import annotations

import http.client
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """``command`` (which listens on ``self.port``) run in ``cwd``; ready once ``ready_path`` answers at all."""

    startup_seconds = 60

    def __init__(self, command: list[str], env: dict, cwd: Path, ready_path: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.command, self.env, self.cwd, self.ready_path = command, env, cwd, ready_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Service:
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env)
        deadline = time.time() + self.startup_seconds
        while time.time() < deadline:
            if self.process.poll() is not None:  # exited: failed to start
                raise RuntimeError(f"{self.command[:3]} exited with {self.process.returncode}")
            try:
                self.request("GET", self.ready_path)
                return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"{self.command[:3]} did not start")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(10)

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response, data


def cookie_jar(response) -> dict:
    jar = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


def cookie_header(jar: dict) -> str:
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def form_sign_in(server: Service, path: str, token_field: str, fields: dict) -> str:
    """Sign in through the login form at ``path`` (with its CSRF token); the Cookie header of the signed-in browser."""
    response, body = server.request("GET", path)
    cookies = cookie_jar(response)
    token = re.search(rf'name="{token_field}"(?: type="hidden")? value="([^"]+)"'.encode(), body)[1].decode()
    response, _ = server.request("POST", path, urlencode({**fields, token_field: token}), {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie_header(cookies)})
    if response.status != 302:
        raise RuntimeError(f"sign-in at {path} failed: {response.status}")
    cookies.update(cookie_jar(response))
    return cookie_header(cookies)
