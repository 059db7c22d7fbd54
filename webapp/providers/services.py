"""Users' provider configs: listing, saving keys and settings, testing the connection, rotation."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.fernet import InvalidToken
from sqlalchemy import and_, select, update

from webapp.accounts.audit import REDACTED, record
from webapp.accounts.models import User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.providers.client import ProviderError, list_models
from webapp.providers.egress import (
    EgressRefused,
    HostUnresolvable,
    checked_addresses,
    host_allowlist,
    is_allowlisted,
)
from webapp.providers.crypto import (
    ApiKeyUnreadable,
    decrypt_api_key,
    encrypt_api_key,
    is_under_newest_key,
    rotate_ciphertext,
)
from webapp.providers.models import Provider, UserProviderConfig

log = logging.getLogger(__name__)

BASE_URL_MAX_LENGTH = 500
LAST_ERROR_MAX_CHARS = 500
# Any run of this many characters of the key found in provider text is treated as an echo of it.
KEY_FRAGMENT_LENGTH = 6
TOKEN = re.compile(r"[A-Za-z0-9_\-.*~+/=]+")


@dataclass
class ProviderCard:
    """One enabled provider with the user's config (None until they save something)."""

    provider: Provider
    config: UserProviderConfig | None
    outcome: tuple[str, str] | None = None  # (banner kind, message) after an action


@dataclass
class RotationSummary:
    rotated: int = 0
    behind: list[int] = field(default_factory=list)  # config ids still not under the newest key


def normalise_base_url(raw: str | None) -> str | None:
    """The override to store (None means the provider's default); ValueError explains a refusal."""
    value = (raw or "").strip()
    if not value:
        return None
    if len(value) > BASE_URL_MAX_LENGTH:
        raise ValueError(f"Use at most {BASE_URL_MAX_LENGTH} characters.")
    if any(character.isspace() for character in value):
        raise ValueError("A URL cannot contain spaces.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("Use an http:// or https:// URL, e.g. https://api.example.com/v1.")
    if not parts.hostname:
        raise ValueError("Include the host name, e.g. https://api.example.com/v1.")
    if parts.username or parts.password:
        raise ValueError("Leave credentials out of the URL: the API key field holds the key.")
    if parts.query or parts.fragment:
        raise ValueError("A base URL has no query string or #fragment.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError("The port is not a valid number.") from None
    allowlist = host_allowlist()
    if parts.scheme == "http" and not is_allowlisted(parts.hostname, port, allowlist):
        raise ValueError("Use https://: plain http:// is only allowed for hosts the operator has allowed.")
    try:
        checked_addresses(parts.hostname, port, allowlist)
    except HostUnresolvable:
        pass  # it may resolve later; every connection checks its addresses again
    except EgressRefused as error:
        raise ValueError(f"That URL cannot be used: {error}.") from None
    return value.rstrip("/")


def redact_secret(text: str, secret: str) -> str:
    """``text`` with ``secret`` and any word sharing a fragment of it replaced by a marker."""
    if not secret:
        return text
    size = min(KEY_FRAGMENT_LENGTH, len(secret))
    text = text.replace(secret, REDACTED)

    def scrub(match: re.Match) -> str:
        word = match.group()
        echoes = any(word[i:i + size] in secret for i in range(len(word) - size + 1))
        return REDACTED if echoes else word

    return TOKEN.sub(scrub, text)


def provider_cards(user: User) -> list[ProviderCard]:
    """Every enabled provider with the user's config, in one query."""
    rows = db.session.execute(
        select(Provider, UserProviderConfig)
        .outerjoin(
            UserProviderConfig,
            and_(UserProviderConfig.provider_id == Provider.id, UserProviderConfig.user_id == user.id),
        )
        .where(Provider.is_enabled)
        .order_by(Provider.name)
    )
    return [ProviderCard(provider, config) for provider, config in rows]


def enabled_provider(slug: str) -> Provider | None:
    return db.session.scalar(select(Provider).where(Provider.slug == slug, Provider.is_enabled))


def config_for(user: User, config_id: int) -> UserProviderConfig | None:
    """The user's own config of an enabled provider; anyone else's is None."""
    return db.session.scalar(
        select(UserProviderConfig)
        .join(Provider, Provider.id == UserProviderConfig.provider_id)
        .where(UserProviderConfig.id == config_id, UserProviderConfig.user_id == user.id, Provider.is_enabled)
    )


def config_of(user: User, provider: Provider) -> UserProviderConfig:
    """The user's config for ``provider``, created (and flushed, so it has an id) when missing."""
    config = db.session.scalar(
        select(UserProviderConfig).where(
            UserProviderConfig.user_id == user.id, UserProviderConfig.provider_id == provider.id
        )
    )
    if config is None:
        config = UserProviderConfig(user_id=user.id, provider_id=provider.id, provider=provider, settings={})
        db.session.add(config)
        db.session.flush()
    return config


def save_api_key(user: User, provider: Provider, api_key: str) -> UserProviderConfig:
    """Store a new or replacement key; it is unverified until tested."""
    config = config_of(user, provider)
    action = "provider_key.replace" if config.api_key_ciphertext else "provider_key.add"
    encrypt_api_key(config, api_key)
    config.last_verified_at = None
    config.last_error = None
    record(action, config, {"provider": provider.slug, "last4": config.api_key_last4})
    return config


def delete_api_key(config: UserProviderConfig) -> None:
    record("provider_key.delete", config, {"provider": config.provider.slug, "last4": config.api_key_last4})
    config.api_key_ciphertext = None
    config.api_key_last4 = None
    config.last_verified_at = None
    config.last_error = None


def update_settings(user: User, provider: Provider, base_url: str | None, is_enabled: bool) -> UserProviderConfig:
    config = config_of(user, provider)
    changes = {
        name: [getattr(config, name), value]
        for name, value in (("base_url", base_url), ("is_enabled", is_enabled))
        if getattr(config, name) != value
    }
    if changes:
        config.base_url = base_url
        config.is_enabled = is_enabled
        # A different endpoint has not been verified yet.
        if "base_url" in changes:
            config.last_verified_at = None
        record("provider_config.update", config, {"provider": provider.slug, **changes})
    return config


def verify_connection(config: UserProviderConfig, timeout: float) -> tuple[str, str]:
    """Call the provider's model list with the stored key; record and return (kind, message)."""
    try:
        api_key = decrypt_api_key(config, purpose="test_connection")
    except ApiKeyUnreadable as error:
        log.warning("provider config %s: stored key unreadable: %s", config.id, error)
        config.last_error = f"The stored key cannot be used ({error}). Replace it."
        record("provider_key.test", config, {"ok": False, "reason": "unreadable"})
        return "error", "The stored key cannot be used; it is explained under Last error."
    base_url = config.base_url or config.provider.default_base_url
    try:
        models = list_models(config.provider.api_style, base_url, api_key, timeout)
    except ProviderError as error:
        config.last_error = redact_secret(str(error), api_key)[:LAST_ERROR_MAX_CHARS]
        record("provider_key.test", config, {"ok": False})
        return "error", "Connection failed; the provider's answer is under Last error."
    config.last_verified_at = utcnow()
    config.last_error = None
    record("provider_key.test", config, {"ok": True, "models": len(models)})
    return "success", f"Connected: {len(models)} model{'' if len(models) == 1 else 's'} available."


def rotate_encryption(batch_size: int = 500) -> RotationSummary:
    """Re-encrypt every stored key under the newest encryption key, one committed batch at a time.

    The web app keeps decrypting with every configured key meanwhile. Each row is updated
    only if its ciphertext is still the one read, so a key replaced concurrently is not
    overwritten (lock_version is left alone on purpose: the payload is unchanged, and an
    open edit of the same row should not fail because of the rotation).
    """
    table = UserProviderConfig.__table__
    summary = RotationSummary()
    last_id = 0
    while rows := db.session.execute(
        select(table.c.id, table.c.api_key_ciphertext)
        .where(table.c.id > last_id, table.c.api_key_ciphertext.is_not(None))
        .order_by(table.c.id)
        .limit(batch_size)
    ).all():
        for config_id, ciphertext in rows:
            try:
                rotated = rotate_ciphertext(ciphertext)
            except InvalidToken:
                continue
            result = db.session.execute(
                update(table)
                .where(table.c.id == config_id, table.c.api_key_ciphertext == ciphertext)
                .values(api_key_ciphertext=rotated)
            )
            summary.rotated += result.rowcount
        db.session.commit()
        last_id = rows[-1][0]
    summary.behind = [
        config_id
        for config_id, ciphertext in db.session.execute(
            select(table.c.id, table.c.api_key_ciphertext).where(table.c.api_key_ciphertext.is_not(None))
        )
        if not is_under_newest_key(ciphertext)
    ]
    record("provider_keys.rotate", (table.name, None), {"rotated": summary.rotated, "behind": len(summary.behind)})
    db.session.commit()
    return summary
