"""A local HTTP server that answers like an OpenAI-compatible provider; nothing leaves the machine.

Paths under ``/v1`` list models for GOOD_KEY and answer 401 echoing any other key (as real
providers do); ``/moved/models`` redirects to the same server under another host name,
``/same-host/models`` redirects within the host, ``/slow/models`` answers too late, and
``/drip/models`` sends its answer one byte every DRIP_SECONDS (each read is quick, the whole is not),
and ``/first-<n>/models`` lists the first n of MODELS (to any key). ``/anthropic/v1/models`` and
``/google/v1beta/models`` answer as Anthropic's and Google's model lists do, each asking for its own
key header (and Anthropic for its version header), with their own error documents.
``POST /v1/chat/completions`` answers like OpenAI's chat completions, ``usage`` included.
"""
from __future__ import annotations

import json
import time

from tests.fake_http import JSONHandler, LocalServer

GOOD_KEY = "sk-test-GoodKey0123456789abcdefWXYZ"
MODELS = ["fake-small", "fake-large", "fake-embed"]
SLOW_SECONDS = 2.0
DRIP_SECONDS = 0.1
DRIP_BYTES = 50
CHAT_FRAME_TOKENS = 3


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
        elif self.path.startswith("/first-") and self.path.endswith("/models"):
            count = int(self.path.removeprefix("/first-").removesuffix("/models"))
            self.reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS[:count]]})
        elif self.path == "/anthropic/v1/models":
            self.anthropic_models()
        elif self.path == "/google/v1beta/models":
            self.google_models()
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

    def anthropic_models(self) -> None:
        if not self.headers.get("anthropic-version"):
            self.reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                        "message": "anthropic-version: header is required"}})
        elif self.headers.get("x-api-key") != GOOD_KEY:
            self.reply(401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "invalid x-api-key"}})
        else:
            self.reply(200, {"data": [{"type": "model", "id": m, "display_name": m.title(),
                                       "created_at": "2026-01-01T00:00:00Z"} for m in MODELS],
                             "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})

    def google_models(self) -> None:
        if self.headers.get("x-goog-api-key") != GOOD_KEY:
            self.reply(400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                       "status": "INVALID_ARGUMENT"}})
        else:
            self.reply(200, {"models": [{"name": f"models/{m}", "displayName": m.title(),
                                         "supportedGenerationMethods": ["generateContent"]} for m in MODELS]})

    def do_POST(self) -> None:  # noqa: N802
        """``/v1/chat/completions``: echoes the last message, with ``usage`` counting words as tokens."""
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append((self.path, dict(self.headers)))
        self.server.chats.append(body)
        given = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.path != "/v1/chat/completions":
            self.reply(404, {"error": {"message": "Unknown path"}})
        elif given != GOOD_KEY:
            self.reply(401, {"error": {"message": f"Incorrect API key provided: {given}.",
                                       "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif body.get("model") not in MODELS:
            self.reply(404, {"error": {"message": f"The model {body.get('model')} does not exist."}})
        else:
            prompt = body["messages"][-1]["content"]
            answer = f"{body['model']} heard: {prompt}"
            self.reply(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
                "usage": {"prompt_tokens": chat_tokens(prompt), "completion_tokens": chat_tokens(answer),
                          "total_tokens": chat_tokens(prompt) + chat_tokens(answer)},
            })


def chat_tokens(text: str) -> int:
    """The fake's token count: words, plus the few tokens a chat message's framing costs."""
    return len(text.split()) + CHAT_FRAME_TOKENS


class FakeProvider(LocalServer):
    """``with FakeProvider() as provider: provider.url("/v1")``."""

    def __init__(self) -> None:
        super().__init__(FakeProviderHandler)
        self.server.requests = []
        self.server.chats = []

    @property
    def requests(self) -> list[tuple[str, dict]]:
        return self.server.requests

    @property
    def chats(self) -> list[dict]:
        return self.server.chats
