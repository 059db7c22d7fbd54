"""Stripe events as Stripe sends them: a JSON body signed with the endpoint's secret (Stripe-Signature)."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.billing.fake_stripe import new_id

# The secret the test app's webhook endpoint verifies with (tests/conftest.py).
WEBHOOK_SECRET = "whsec_test_console_webhooks"
API_VERSION = "2026-10-28.endive"


def signature(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """Stripe's scheme: ``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<payload>">``."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(event_type: str, obj: dict[str, Any], created: int | None = None, event_id: str | None = None) -> dict:
    return {"id": event_id or new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()) if created is None else created, "type": event_type,
            "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}}


def body(document: dict) -> bytes:
    return json.dumps(document).encode()


def deliver(client, document: dict, secret: str = WEBHOOK_SECRET, signed_at: int | None = None):
    """POST ``document`` to the webhook endpoint, signed as Stripe signs it."""
    payload = body(document)
    return client.post("/webhooks/stripe", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": signature(payload, secret, signed_at)})
