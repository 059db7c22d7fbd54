"""Sign-in throttling per account and client address, instead of a lock that anyone could set off.

OWASP's Authentication Cheat Sheet warns that locking an account after failed sign-ins lets
anyone lock anyone out. Here failures are counted per (email, address) for a day: the first
``LOCKOUT_THRESHOLD`` cost nothing, and after that each failure makes that address wait twice
as long as the last before its next attempt is even checked (1 s, 2 s, 4 s ... up to
``LOCKOUT_MINUTES``). The owner, signing in from their own address, is not slowed by someone
else's guesses; a successful sign-in from an address clears its count, and a password reset
clears every count of the account (the keys include a digest of the password hash).
Unknown emails are counted the same way, so the throttle tells nothing about who is registered.
The counts live in the shared counter store (webapp.ratelimits), so every worker sees them.
"""
from __future__ import annotations

import hashlib
import math
import time

from flask import current_app

from webapp.accounts.models import User
from webapp.ratelimits import counters

WINDOW_SECONDS = 24 * 60 * 60


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _key(kind: str, email: str, address: str | None, user: User | None) -> str:
    generation = _digest(user.password_hash) if user is not None else "-"
    return f"{current_app.config['RATELIMIT_KEY_PREFIX']}/signin-{kind}/{_digest(email.strip().lower())}/{address}/{generation}"


def seconds_to_wait(email: str, address: str | None, user: User | None) -> int:
    """How long this address must wait before its next sign-in to ``email`` is checked (0: no wait)."""
    key = _key("wait", email, address, user)
    if not counters().get(key):
        return 0
    return max(0, math.ceil(counters().get_expiry(key) - time.time()))


def record_failure(email: str, address: str | None, user: User | None) -> int:
    """Count a failed sign-in; returns the wait it imposes on this address (0 below the threshold)."""
    failures = counters().incr(_key("failures", email, address, user), WINDOW_SECONDS)
    beyond = failures - current_app.config["LOCKOUT_THRESHOLD"]
    if beyond <= 0:
        return 0
    wait = min(2 ** min(beyond - 1, 30), current_app.config["LOCKOUT_MINUTES"] * 60)
    wait_key = _key("wait", email, address, user)
    counters().clear(wait_key)
    counters().incr(wait_key, wait)
    return wait


def record_success(email: str, address: str | None, user: User) -> None:
    for kind in ("failures", "wait"):
        counters().clear(_key(kind, email, address, user))
