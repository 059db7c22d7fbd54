"""A local HTTP server that answers like an OpenAI-compatible provider; nothing leaves the machine.

Paths under ``/v1`` list models for GOOD_KEY and answer 401 echoing any other key (as real
providers do); ``/moved/models`` redirects to the same server under another host name,
``/same-host/models`` redirects within the host, ``/slow/models`` answers too late, and
``/drip/models`` sends its answer one byte every DRIP_SECONDS (each read is quick, the whole is not).
"""
from __future__ import annotations

import time

from tests.fake_http import JSONHandler, LocalServer

GOOD_KEY = "sk-test-GoodKey0123456789abcdefWXYZ"
MODELS = ["fake-small", "fake-large", "fake-embed"]
SLOW_SECONDS = 2.0
DRIP_SECONDS = 0.1
DRIP_BYTES = 50


class FakeProviderHandler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802  (the http.server hook's name)
        self.server.requests.append((self.path, dict(self.headers)))
        if self.path == "/moved/models":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_port}/v1/models")
            self.end_headers()
        elif self.path == "/same-host/models":
            self.send_response(307)
            self.send_header("Location", "/v1/models")
            self.end_headers()
        elif self.path == "/slow/models":
            time.sleep(SLOW_SECONDS)
            self.reply(200, {"object": "list", "data": []})
        elif self.path == "/drip/models":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(DRIP_BYTES))
            self.end_headers()
            for _ in range(DRIP_BYTES):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(DRIP_SECONDS)
        elif self.path == "/v1/models":
            given = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if given == GOOD_KEY:
                self.reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
            else:
                self.reply(401, {"error": {
                    "message": f"Incorrect API key provided: {given}. You can find your API key at "
                               f"https://platform.example/account/api-keys (starts {given[:10]}…{given[-6:]}).",
                    "type": "invalid_request_error", "code": "invalid_api_key",
                }})
        else:
            self.reply(404, {"error": {"message": "Unknown path"}})


class FakeProvider(LocalServer):
    """``with FakeProvider() as provider: provider.url("/v1")``."""

    def __init__(self) -> None:
        super().__init__(FakeProviderHandler)
        self.server.requests = []

    @property
    def requests(self) -> list[tuple[str, dict]]:
        return self.server.requests
