"""Account rules: sign-in and lockout, password reset and change, email verification, sessions.

Each action runs in one transaction with its audit row and commits once; mail
goes out only after the commit, so no message points at a token that was rolled back.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import func, select

from webapp.accounts import throttle
from webapp.accounts.audit import record
from webapp.accounts.models import User, UserSession
from webapp.accounts.passwords import hash_password, needs_rehash, verify_password
from webapp.accounts.sessions import end_sessions, end_user_sessions
from webapp.accounts.tokens import (
    EMAIL_VERIFICATION, PASSWORD_RESET, expire_tokens, issue_token, usable_token, use_token,
)
from webapp.db import utcnow
from webapp.extensions import db
from webapp.mail import absolute_url, send_mail

# A staff lock has no end of its own: it lasts until staff unlock the account.
STAFF_LOCK_UNTIL = datetime(9999, 12, 31, tzinfo=timezone.utc)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def is_locked(user: User) -> bool:
    return user.locked_until is not None and user.locked_until > utcnow()


def authenticate(email: str, password: str, address: str | None = None) -> User | None:
    """The user these credentials sign in from client ``address``, or None; counts failures.

    Unknown emails, wrong passwords, throttled, locked and deactivated accounts all look the
    same to the caller, so the answer never tells whether an email is registered. Repeated
    failures slow down that address only (webapp.accounts.throttle), never the account's owner.
    """
    user = find_user_by_email(email)
    if throttle.seconds_to_wait(email, address, user):
        return None
    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None:
        throttle.record_failure(email, address, None)
        return None
    if not user.is_active or is_locked(user):
        return None
    if not password_ok:
        user.failed_login_count += 1
        throttle.record_failure(email, address, user)
        db.session.commit()
        return None
    throttle.record_success(email, address, user)
    user.failed_login_count = 0
    user.last_login_at = utcnow()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def is_staff_locked(user: User) -> bool:
    return user.locked_until is not None and user.locked_until >= STAFF_LOCK_UNTIL


# --- password reset ------------------------------------------------------------


def mail_token_link(user: User, token_type: str, endpoint: str, subject: str, issued_by: User | None,
                    ip_address: str | None = None) -> None:
    """Issue a token, audit it, commit, then mail ``user`` the link (template ``mail/<token_type>.txt``)."""
    raw = issue_token(user, token_type, issued_by=issued_by)
    record(f"{token_type}.issue", user, {"issued_by": issued_by.email if issued_by else "self"}, actor=issued_by,
           ip_address=ip_address)
    db.session.commit()
    send_mail(
        user.email, subject, token_type, user=user, link=absolute_url(endpoint, token=raw),
        minutes=current_app.config["TOKEN_TTL_MINUTES"][token_type], issued_by=issued_by,
    )


def send_password_reset(user: User, issued_by: User | None = None, ip_address: str | None = None) -> None:
    """Mail ``user`` a single-use reset link; staff who start it never see the link."""
    subject = ("Minion Console support sent you a password reset link" if issued_by
               else "Reset your Minion Console password")
    mail_token_link(user, PASSWORD_RESET, "accounts.password_reset", subject, issued_by, ip_address)


def request_password_reset(email: str, ip_address: str | None = None) -> None:
    """Mail a reset link when ``email`` belongs to an active account; silently nothing otherwise.

    The sign-in page runs this after its response (webapp.mail.after_response), so the request
    does the same work, in the same time, for known and unknown addresses.
    """
    user = find_user_by_email(email)
    if user is not None and user.is_active:
        send_password_reset(user, ip_address=ip_address)


def reset_password(raw_token: str, new_password: str) -> User | None:
    """Set the password from a reset link; None when the link is unknown, used or expired.

    Spends the token, expires the user's other reset links and signs out every session.
    """
    token = usable_token(raw_token, PASSWORD_RESET)
    if token is None:
        return None
    user = token.user
    use_token(token)
    user.password_hash = hash_password(new_password)
    user.failed_login_count = 0
    revoked = end_user_sessions(user, revoked_by=None)
    record("password.reset", user, {"sessions_revoked": revoked}, actor=user)
    db.session.commit()
    notify_password_changed(user)
    return user


def notify_password_changed(user: User) -> None:
    send_mail(
        user.email, "Your Minion Console password was changed", "password_changed",
        user=user, reset_link=absolute_url("accounts.password_forgot"),
    )


def change_password(user: User, current_password: str, new_password: str, keep_session_id: int | None) -> bool:
    """Change the password when ``current_password`` is right; signs out the user's other sessions."""
    if not verify_password(user.password_hash, current_password):
        return False
    user.password_hash = hash_password(new_password)
    revoked = end_user_sessions(user, revoked_by=user, keep_session_id=keep_session_id)
    record("password.change", user, {"sessions_revoked": revoked}, actor=user)
    db.session.commit()
    notify_password_changed(user)
    return True


# --- email verification ------------------------------------------------------------


def send_verification(user: User, issued_by: User | None = None) -> None:
    mail_token_link(user, EMAIL_VERIFICATION, "accounts.email_verify", "Confirm your email address", issued_by)


def verify_email(raw_token: str) -> User | None:
    """Mark the address verified from a verification link; None when the link is not usable."""
    token = usable_token(raw_token, EMAIL_VERIFICATION)
    if token is None:
        return None
    user = token.user
    use_token(token)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    record("email.verify", user, {"email": user.email}, actor=user)
    db.session.commit()
    return user


def expire_outstanding_tokens(user: User, actor: User) -> int:
    """Make every unused reset and verification link of ``user`` stop working; returns how many."""
    expired = expire_tokens(user)
    record("tokens.expire", user, {"tokens_expired": expired}, actor=actor)
    db.session.commit()
    return expired


# --- sessions and locks ------------------------------------------------------------


def active_sessions(user: User) -> list[UserSession]:
    """The user's live sessions, most recently used first."""
    return list(db.session.scalars(
        select(UserSession)
        .where(UserSession.user_id == user.id, UserSession.is_active, UserSession.expires_at > utcnow())
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    ))


def revoke_session(user: User, session_id: int, actor: User) -> bool:
    """Revoke one of ``user``'s sessions; False when it is not theirs or already ended."""
    ended = end_sessions(UserSession.id == session_id, UserSession.user_id == user.id, revoked_by=actor)
    if not ended:
        return False
    record("session.revoke", user, {"session_id": session_id}, actor=actor)
    db.session.commit()
    return True


def revoke_all_sessions(user: User, actor: User, keep_session_id: int | None = None) -> int:
    """Revoke every session of ``user`` (but ``keep_session_id``); returns how many ended."""
    ended = end_user_sessions(user, revoked_by=actor, keep_session_id=keep_session_id)
    record("sessions.revoke_all", user, {"sessions_revoked": ended, "kept_session_id": keep_session_id}, actor=actor)
    db.session.commit()
    return ended


def lock_account(user: User, actor: User) -> int:
    """Lock the account until staff unlock it, and sign out its sessions; returns how many ended."""
    old = user.locked_until
    user.locked_until = STAFF_LOCK_UNTIL
    ended = end_user_sessions(user, revoked_by=actor)
    record("account.lock", user, {"locked_until": [old, "until unlocked"], "sessions_revoked": ended}, actor=actor)
    db.session.commit()
    return ended


def unlock_account(user: User, actor: User) -> None:
    old = user.locked_until
    user.locked_until = None
    user.failed_login_count = 0
    record("account.unlock", user, {"locked_until": [old, None]}, actor=actor)
    db.session.commit()
