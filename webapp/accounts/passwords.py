"""Password hashing (argon2id) and the password policy."""
from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

COMMON_PASSWORDS = frozenset(
    """123456 123456789 12345678 password qwerty123 qwerty 1q2w3e4r 111111 12345 1234567890
    password1 password123 123123 abc123 iloveyou admin admin123 welcome welcome1 letmein
    monkey dragon football baseball sunshine princess qwertyuiop 1234567 000000 passw0rd
    trustno1 superman starwars master hello123 freedom whatever qazwsx 654321 666666
    987654321 michael shadow charlie 123qwe zaq12wsx computer changeme secret1234
    password12 password1234 qwerty12345 1qaz2wsx3edc asdfghjkl asdf1234 iloveyou1""".split()
)


@lru_cache
def _hasher_and_dummy(profile: str) -> tuple[PasswordHasher, str]:
    """The argon2 hasher of one of argon2-cffi's named profiles, and a fixed hash of its own
    to verify against when the email is unknown, so both paths take as long."""
    hasher = PasswordHasher.from_parameters(getattr(profiles, profile))
    return hasher, hasher.hash("not-a-real-password")


def _hasher() -> tuple[PasswordHasher, str]:
    return _hasher_and_dummy(current_app.config["PASSWORD_HASH_PROFILE"])


def hash_password(password: str) -> str:
    return _hasher()[0].hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash it still spends the same time."""
    hasher, dummy_hash = _hasher()
    try:
        return hasher.verify(password_hash or dummy_hash, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher()[0].check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        return f"Use at least {minimum} characters."
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        return "That password is too common; choose one that is harder to guess."
    return None
