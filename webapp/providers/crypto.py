"""Provider API keys encrypted at rest with MultiFernet, each ciphertext bound to its owner.

The plaintext sealed is ``{"u": user_id, "p": provider_id, "k": api_key}``: a ciphertext
copied to another user's (or another provider's) row fails to decrypt there.
"""
from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

from webapp.accounts.audit import record
from webapp.providers.models import UserProviderConfig


class ApiKeyUnreadable(Exception):
    """The stored ciphertext cannot be opened for this row (tampered, copied, or its key dropped)."""


def encryption_keys() -> list[Fernet]:
    """The configured Fernet keys, newest first."""
    raw = current_app.config["PROVIDER_KEY_ENCRYPTION_KEYS"]
    return [Fernet(key.strip()) for key in raw.split(",") if key.strip()]


def multi_fernet() -> MultiFernet:
    """Encrypts with the newest key; decrypts with any configured key."""
    return MultiFernet(encryption_keys())


def encrypt_api_key(config: UserProviderConfig, api_key: str) -> None:
    """Seal ``api_key`` into ``config`` (ciphertext and last 4 characters)."""
    if config.user_id is None or config.provider_id is None:
        raise ValueError("the config needs its user_id and provider_id before a key is sealed to it")
    payload = json.dumps({"u": config.user_id, "p": config.provider_id, "k": api_key})
    config.api_key_ciphertext = multi_fernet().encrypt(payload.encode())
    config.api_key_last4 = api_key[-4:]


def decrypt_api_key(config: UserProviderConfig, purpose: str = "use") -> str:
    """The plaintext key of ``config``; the use is audited (never the key) for ``purpose``."""
    if config.api_key_ciphertext is None:
        raise ApiKeyUnreadable("no API key is stored")
    try:
        payload = json.loads(multi_fernet().decrypt(config.api_key_ciphertext))
    except (InvalidToken, ValueError) as error:
        raise ApiKeyUnreadable("the stored key cannot be decrypted with the configured keys") from error
    if payload.get("u") != config.user_id or payload.get("p") != config.provider_id:
        raise ApiKeyUnreadable("the stored key belongs to another account or provider")
    record("provider_key.use", config, {"purpose": purpose})
    return payload["k"]


def rotate_ciphertext(ciphertext: bytes) -> bytes:
    """The same sealed payload re-encrypted under the newest key."""
    return multi_fernet().rotate(ciphertext)


def is_under_newest_key(ciphertext: bytes) -> bool:
    try:
        encryption_keys()[0].decrypt(ciphertext)
    except InvalidToken:
        return False
    return True
