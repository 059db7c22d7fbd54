"""Configuration from environment variables, with safe defaults for a newcomer."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from webapp.celery_app import broker_url

# The argon2-cffi profile passwords are hashed with: RFC 9106's low-memory profile (argon2id, t=3,
# m=64 MiB, p=4), above OWASP's minimum (m=19 MiB, t=2, p=1). Not read from the environment, so no
# deployment can weaken it; only the test apps set argon2's CHEAPEST profile (tests/conftest.py).
PASSWORD_HASH_PROFILE = "RFC_9106_LOW_MEMORY"


def database_url(raw: str | None, instance_path: str) -> str:
    """The SQLAlchemy URL: SQLite in the instance folder by default, psycopg 3 for PostgreSQL."""
    if not raw:
        return "sqlite:///" + os.path.join(instance_path, "minion-console.sqlite3")
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def instance_secret(instance_path: str, name: str, make) -> str:
    """A secret generated once and kept in the instance folder, never hard-coded."""
    path = Path(instance_path) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make())
    return path.read_text().strip()


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _list(name: str) -> list[str]:
    return [item.strip().lower() for item in os.environ.get(name, "").split(",") if item.strip()]


def trusted_hosts(raw: str | None, base_url: str) -> list[str]:
    """Hosts the app answers to: TRUSTED_HOSTS, else BASE_URL's host plus the loopback names."""
    hosts = [h.strip() for h in (raw or "").split(",") if h.strip()]
    return hosts or [urlsplit(base_url).hostname or "localhost", "localhost", "127.0.0.1"]


def from_environment(instance_path: str) -> dict:
    env = os.environ.get
    base_url = env("BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    return {
        "SECRET_KEY": env("SECRET_KEY")
        or instance_secret(instance_path, "secret_key", lambda: secrets.token_hex(32)),
        "SQLALCHEMY_DATABASE_URI": database_url(env("DATABASE_URL"), instance_path),
        # Pre-ping costs a round-trip on every request (~1-2 ms here). Without it a
        # connection dropped by a database restart fails one request with a 503
        # (Retry-After), and SQLAlchemy then discards the stale pool.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": _bool("DATABASE_POOL_PRE_PING", False)},
        # PostgreSQL only (webapp.database): together they answer a stalled database with a 503
        # within about DATABASE_ANSWER_TIMEOUT_SECONDS; gunicorn.conf.py's timeout stays above them.
        "DATABASE_CONNECT_TIMEOUT_SECONDS": _int("DATABASE_CONNECT_TIMEOUT_SECONDS", 3),
        "DATABASE_STATEMENT_TIMEOUT_MS": _int("DATABASE_STATEMENT_TIMEOUT_MS", 4000),
        "DATABASE_LOCK_TIMEOUT_MS": _int("DATABASE_LOCK_TIMEOUT_MS", 3000),
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS": _int("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000),
        "DATABASE_ANSWER_TIMEOUT_SECONDS": _float("DATABASE_ANSWER_TIMEOUT_SECONDS", 5.0),
        "DATABASE_POOL_TIMEOUT_SECONDS": _float("DATABASE_POOL_TIMEOUT_SECONDS", 5.0),
        # Comma-separated Fernet keys, newest first; the first encrypts, all decrypt.
        "PROVIDER_KEY_ENCRYPTION_KEYS": env("PROVIDER_KEY_ENCRYPTION_KEYS")
        or instance_secret(instance_path, "provider_keys", lambda: Fernet.generate_key().decode()),
        "BASE_URL": base_url,
        "TRUSTED_HOSTS": trusted_hosts(env("TRUSTED_HOSTS"), base_url),
        "SESSION_IDLE_TIMEOUT_MINUTES": _int("SESSION_IDLE_TIMEOUT_MINUTES", 60 * 12),
        "SESSION_ABSOLUTE_LIFETIME_HOURS": _int("SESSION_ABSOLUTE_LIFETIME_HOURS", 24 * 14),
        "LOCKOUT_THRESHOLD": _int("LOCKOUT_THRESHOLD", 5),
        "LOCKOUT_MINUTES": _int("LOCKOUT_MINUTES", 15),
        "PASSWORD_MIN_LENGTH": _int("PASSWORD_MIN_LENGTH", 10),
        "PASSWORD_HASH_PROFILE": PASSWORD_HASH_PROFILE,
        "TOKEN_TTL_MINUTES": {
            "password_reset": _int("PASSWORD_RESET_TTL_MINUTES", 60),
            "email_verification": _int("EMAIL_VERIFICATION_TTL_MINUTES", 60 * 48),
        },
        # Hosts (name or name:port) that provider base URLs may use although they are private or
        # local, e.g. a model server on this machine; everything else must resolve to public addresses.
        "PROVIDER_HOST_ALLOWLIST": _list("PROVIDER_HOST_ALLOWLIST"),
        "RATELIMIT_STORAGE_URI": env("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_KEY_PREFIX": env("RATELIMIT_KEY_PREFIX", "minion-console"),
        "AUTH_RATE_LIMIT": env("AUTH_RATE_LIMIT", "10 per minute"),
        "MAIL_BACKEND": env("MAIL_BACKEND", "outbox"),
        "MAIL_FROM": env("MAIL_FROM", "Minion Console <no-reply@localhost>"),
        "SMTP_HOST": env("SMTP_HOST", "localhost"),
        "SMTP_PORT": _int("SMTP_PORT", 587),
        "SMTP_USE_TLS": _bool("SMTP_USE_TLS", True),
        "SMTP_USERNAME": env("SMTP_USERNAME"),
        "SMTP_PASSWORD": env("SMTP_PASSWORD"),
        "SESSION_COOKIE_SECURE": _bool("SECURE_COOKIES", False),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        # The CSRF token lives as long as the session, so a page left open all day still works.
        "WTF_CSRF_TIME_LIMIT": None,
        # The one artifact store (datasets, trained models): a folder, or any fsspec URL.
        "ARTIFACT_STORE_URL": env("ARTIFACT_STORE_URL") or os.path.join(instance_path, "artifacts"),
        "DATASET_MAX_ROW_CHARS": _int("DATASET_MAX_ROW_CHARS", 32_000),
        # Limits for plans that set none: the largest dataset file, and datasets per user.
        "DATASET_MAX_BYTES": _int("DATASET_MAX_BYTES", 50 * 1024 * 1024),
        "DATASETS_PER_USER": _int("DATASETS_PER_USER", 20),
        # The plan a new account starts on, and whose quotas hold a user without a live subscription.
        "SIGNUP_PLAN": env("SIGNUP_PLAN", "free"),
        # Off for private deployments: accounts are then made by staff only.
        "SIGNUP_ENABLED": _bool("SIGNUP_ENABLED", True),
        # Celery: RabbitMQ (amqp://...) or Redis (redis://...) in production; by default the serverless
        # embedded broker, kombu's filesystem transport in the instance folder (why: webapp/celery_app.py).
        "CELERY_BROKER_URL": broker_url(env("CELERY_BROKER_URL")),
        # The queue the console's tasks go to and its workers read: consoles sharing a broker each name their own.
        "CELERY_QUEUE": env("CELERY_QUEUE", "minion-console"),
        # The job engine's clock: a worker heartbeats its job every JOB_HEARTBEAT_SECONDS; one not
        # heard for JOB_LEASE_SECONDS is lost. The sweeper runs every JOB_SWEEP_SECONDS and dispatches
        # again a queued job no worker claimed within JOB_DISPATCH_TIMEOUT_SECONDS.
        "JOB_HEARTBEAT_SECONDS": _float("JOB_HEARTBEAT_SECONDS", 10),
        "JOB_LEASE_SECONDS": _float("JOB_LEASE_SECONDS", 60),
        "JOB_SWEEP_SECONDS": _float("JOB_SWEEP_SECONDS", 30),
        "JOB_DISPATCH_TIMEOUT_SECONDS": _float("JOB_DISPATCH_TIMEOUT_SECONDS", 120),
        # Claims a job may use: 2 is one retry after a lost worker.
        "JOB_MAX_ATTEMPTS": _int("JOB_MAX_ATTEMPTS", 2),
        "BILLING_ROLL_SECONDS": _float("BILLING_ROLL_SECONDS", 3600),
        # How often beat looks for metered quotas that crossed 50, 80 or 100% (and mails their users).
        "USAGE_ALERT_SECONDS": _float("USAGE_ALERT_SECONDS", 600),
        # Card payments through Stripe, when both are set (README: "Card payments through Stripe");
        # without them payments are invoices paid by bank transfer. Each plan sold by card names its
        # Stripe price in the admin (Plans → Stripe price id).
        "STRIPE_SECRET_KEY": env("STRIPE_SECRET_KEY"),
        "STRIPE_WEBHOOK_SECRET": env("STRIPE_WEBHOOK_SECRET"),
        # A signed event older than this is refused (a replayed capture), as Stripe's libraries do.
        "STRIPE_WEBHOOK_TOLERANCE_SECONDS": _int("STRIPE_WEBHOOK_TOLERANCE_SECONDS", 300),
        "STRIPE_WEBHOOK_MAX_BYTES": _int("STRIPE_WEBHOOK_MAX_BYTES", 512 * 1024),
        # minion-console starts a Celery worker and beat beside the web server unless this is off.
        "EMBEDDED_WORKER": _bool("EMBEDDED_WORKER", True),
        "COUNT_ESTIMATE_THRESHOLD": _int("COUNT_ESTIMATE_THRESHOLD", 10_000),
        "PAGE_SIZE": _int("PAGE_SIZE", 20),
        "DEMO_PASSWORD": env("DEMO_PASSWORD"),
        "QUERY_COUNT_HEADER": _bool("QUERY_COUNT_HEADER", False),
        # Input limits: a larger body is refused with 413 before anything reads it.
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024),
        "JSON_MAX_DEPTH": _int("JSON_MAX_DEPTH", 32),
        "RUNNER_MAX_EVENTS_PER_REPORT": _int("RUNNER_MAX_EVENTS_PER_REPORT", 1_000),
        "RUNNER_MAX_EVENT_MESSAGE_LENGTH": _int("RUNNER_MAX_EVENT_MESSAGE_LENGTH", 4_000),
        "RUNNER_MAX_METRIC_KEYS": _int("RUNNER_MAX_METRIC_KEYS", 100),
        "RUNNER_MAX_METRIC_KEY_LENGTH": _int("RUNNER_MAX_METRIC_KEY_LENGTH", 100),
        # The metering API: events in one batch, and how far ahead of the console's clock an event may be.
        "METERING_MAX_EVENTS_PER_BATCH": _int("METERING_MAX_EVENTS_PER_BATCH", 1_000),
        "METERING_MAX_FUTURE_SECONDS": _int("METERING_MAX_FUTURE_SECONDS", 300),
        "JOB_MAX_STORED_METRICS": _int("JOB_MAX_STORED_METRICS", 200),
        # External jobs: each request to a provider's fine-tuning API gives up after this many seconds;
        # a worker polls the provider's job every EXTERNAL_JOB_POLL_SECONDS and fails it after this many
        # failed polls in a row.
        "PROVIDER_API_TIMEOUT_SECONDS": _float("PROVIDER_API_TIMEOUT_SECONDS", 60),
        # The most tokens a playground answer may take at the provider.
        "PLAYGROUND_MAX_OUTPUT_TOKENS": _int("PLAYGROUND_MAX_OUTPUT_TOKENS", 512),
        "EXTERNAL_JOB_POLL_SECONDS": _float("EXTERNAL_JOB_POLL_SECONDS", 15),
        "EXTERNAL_JOB_MAX_POLL_FAILURES": _int("EXTERNAL_JOB_MAX_POLL_FAILURES", 5),
        # The staff workers page: each worker writes a heartbeat row every WORKER_HEARTBEAT_SECONDS and
        # shows as stale once not heard from for WORKER_STALE_SECONDS. Kept slower than the job heartbeat:
        # on SQLite every write from another process can make a web request's transaction retry.
        "WORKER_HEARTBEAT_SECONDS": _float("WORKER_HEARTBEAT_SECONDS", 30),
        "WORKER_STALE_SECONDS": _float("WORKER_STALE_SECONDS", 90),
    }
