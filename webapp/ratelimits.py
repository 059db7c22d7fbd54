"""Counters that every app process must share: Flask-Limiter's and the sign-in throttle's.

``RATELIMIT_STORAGE_URI`` names the store. ``memory://`` (the default) counts in each process
alone, which is right for one process only: with several gunicorn workers each one would grant
the full allowance. Production sets ``redis://...`` (the ``redis`` extra), and start-up warns
when several workers (``WEB_CONCURRENCY``, which gunicorn.conf.py sets) share ``memory://``.
"""
from __future__ import annotations

import os

from flask import Flask, current_app
from limits.storage import Storage, storage_from_string


def counters() -> Storage:
    """The shared counter store of the current app."""
    return current_app.extensions["shared_counters"]


def worker_count() -> int:
    return int(os.environ.get("WEB_CONCURRENCY") or 1)


def init_app(app: Flask) -> None:
    uri = app.config["RATELIMIT_STORAGE_URI"]
    app.extensions["shared_counters"] = storage_from_string(uri)
    if uri.startswith("memory://") and worker_count() > 1:
        app.logger.warning(
            "RATELIMIT_STORAGE_URI is memory:// with %d worker processes: each counts alone, so rate limits "
            "and sign-in throttling allow %d times as much; use redis://...", worker_count(), worker_count(),
        )
