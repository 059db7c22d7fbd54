"""Configuration from environment variables, with safe defaults for a newcomer."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet


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
        "TOKEN_TTL_MINUTES": {
            "password_reset": _int("PASSWORD_RESET_TTL_MINUTES", 60),
            "email_verification": _int("EMAIL_VERIFICATION_TTL_MINUTES", 60 * 48),
        },
        "RATELIMIT_STORAGE_URI": env("RATELIMIT_STORAGE_URI", "memory://"),
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
        "COUNT_ESTIMATE_THRESHOLD": _int("COUNT_ESTIMATE_THRESHOLD", 10_000),
        "PAGE_SIZE": _int("PAGE_SIZE", 20),
        "DEMO_PASSWORD": env("DEMO_PASSWORD"),
        "QUERY_COUNT_HEADER": _bool("QUERY_COUNT_HEADER", False),
    }
