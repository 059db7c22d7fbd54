"""Server-side sessions: the cookie carries an opaque token, the database its hash."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from ua_parser import parse as ua_parse

from webapp.accounts.models import Permission, RolePermission, User, UserRole, UserSession
from webapp.database import write_transaction
from webapp.db import utcnow
from webapp.extensions import db
from webapp.security import hash_token, new_token

# last_seen_at is written at most this often, so reads don't each cost a write.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
GENERIC_DEVICES = frozenset({"Other", "Generic Smartphone", "Generic Feature Phone", "Mac", "K", "Spider"})


def start_session(user: User, ip_address: str | None, user_agent: str | None) -> str:
    """Create a session row for ``user`` and return the token for the cookie."""
    token = new_token()
    now = utcnow()
    lifetime = timedelta(hours=current_app.config["SESSION_ABSOLUTE_LIFETIME_HOURS"])
    db.session.add(UserSession(
        user_id=user.id,
        session_token_hash=hash_token(token),
        ip_address=ip_address,
        user_agent=(user_agent or "")[:500] or None,
        last_seen_at=now,
        expires_at=now + lifetime,
    ))
    user.session_token = token
    return token


def active_session_row(token: str):
    """(session, user) for an active session token, or None.

    The user's permission codes come back in the same round-trip (one row per
    code) and are kept on the user, since nearly every page checks one.
    """
    rows = db.session.execute(
        select(UserSession, User, Permission.code)
        .join(User, User.id == UserSession.user_id)
        .outerjoin(UserRole, UserRole.user_id == User.id)
        .outerjoin(RolePermission, RolePermission.role_id == UserRole.role_id)
        .outerjoin(Permission, Permission.id == RolePermission.permission_id)
        .where(UserSession.session_token_hash == hash_token(token), UserSession.is_active)
    ).all()
    if not rows:
        return None
    session_row, user, _code = rows[0]
    user._permission_codes = frozenset(code for _s, _u, code in rows if code is not None)
    return session_row, user


def resume_session(token: str) -> User | None:
    """The user behind a live session token, or None when it is unknown, revoked or expired."""
    row = active_session_row(token)
    if row is None:
        return None
    session_row, user = row
    now = utcnow()
    idle_limit = timedelta(minutes=current_app.config["SESSION_IDLE_TIMEOUT_MINUTES"])
    if not user.is_active or session_row.expires_at <= now or session_row.last_seen_at + idle_limit <= now:
        end_sessions(UserSession.id == session_row.id, revoked_by=None)
        db.session.commit()
        return None
    if now - session_row.last_seen_at >= LAST_SEEN_RESOLUTION:
        # A plain UPDATE: no lock_version bump, so it never conflicts with an admin edit. In a
        # transaction of its own that holds the write lock from the start: on SQLite the read
        # above would otherwise make it fail whenever the worker wrote in between.
        write_transaction(lambda: db.session.execute(
            update(UserSession).where(UserSession.id == session_row.id).values(last_seen_at=now)
        ))
    user.session_token = token
    user.session_id = session_row.id
    return user


def end_sessions(*conditions, revoked_by: User | None) -> int:
    """Revoke every active session matching ``conditions``; returns how many ended."""
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.is_active, *conditions)
        .values(
            is_active=False,
            revoked_at=utcnow(),
            revoked_by_id=revoked_by.id if revoked_by else None,
            lock_version=UserSession.lock_version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def end_session_by_token(token: str) -> None:
    end_sessions(UserSession.session_token_hash == hash_token(token), revoked_by=None)


def end_user_sessions(user: User, revoked_by: User | None, keep_session_id: int | None = None) -> int:
    conditions = [UserSession.user_id == user.id]
    if keep_session_id is not None:
        conditions.append(UserSession.id != keep_session_id)
    return end_sessions(*conditions, revoked_by=revoked_by)


def device_name(user_agent: str | None) -> str:
    """A readable name for a browser, "Chrome on Linux" or "Mobile Safari on iPhone", from uap-core's rules."""
    if not user_agent:
        return "Unknown browser"
    result = ua_parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    # A named device (iPhone, Pixel 7) says more than its system; generic names say less.
    device = result.device.family if result.device and result.device.family not in GENERIC_DEVICES else None
    system = result.os.family if result.os else None
    where = device or system
    if browser and where:
        return f"{browser} on {where}"
    return browser or where or "Unknown browser"
