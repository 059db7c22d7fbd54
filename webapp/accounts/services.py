"""Sign-in rules: credentials, lockout after repeated failures, password changes."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from webapp.accounts.models import User
from webapp.accounts.passwords import hash_password, needs_rehash, verify_password
from webapp.db import utcnow
from webapp.extensions import db


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def is_locked(user: User) -> bool:
    return user.locked_until is not None and user.locked_until > utcnow()


def authenticate(email: str, password: str) -> User | None:
    """The user these credentials sign in, or None; counts failures and locks the account.

    Unknown emails, wrong passwords, locked and deactivated accounts all look the
    same to the caller, so the answer never tells whether an email is registered.
    """
    user = find_user_by_email(email)
    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None:
        return None
    if not user.is_active or is_locked(user):
        return None
    if not password_ok:
        user.failed_login_count += 1
        if user.failed_login_count >= current_app.config["LOCKOUT_THRESHOLD"]:
            user.locked_until = utcnow() + timedelta(minutes=current_app.config["LOCKOUT_MINUTES"])
            user.failed_login_count = 0
        db.session.commit()
        return None
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = utcnow()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user
