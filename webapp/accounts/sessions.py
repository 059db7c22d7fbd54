"""Server-side sessions: the cookie carries an opaque token, the database its hash."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar

from flask import current_app
from sqlalchemy import Select, bindparam, select, update
from ua_parser import parse as ua_parse

from webapp.accounts.models import Permission, RolePermission, User, UserRole, UserSession
from webapp.database import write_transaction
from webapp.db import joined_codes, utcnow
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


# Upper layers add what every page shows of the signed-in user (billing: the dunning banner) to the
# one query: each takes the query and returns it with labelled columns added, found in ``extras``.
SIGNED_IN_EXTENSIONS: list[Callable[[Select], Select]] = []


def extend_signed_in_query(extension: Callable[[Select], Select]) -> None:
    SIGNED_IN_EXTENSIONS.append(extension)


@dataclass(frozen=True)
class SignedInUser:
    """The signed-in user as a request sees them: one row, read with the session, never an ORM object.

    Views that change the account load the ``User`` itself with :meth:`record`.
    """

    id: int
    email: str
    display_name: str
    time_zone: str
    email_verified_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    current_subscription_id: int | None
    muted_usage_alerts: tuple[str, ...]
    permissions: frozenset[str]
    session_id: int
    session_token: str
    extras: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # Flask-Login: only an active account gets this far, and the cookie's identity is the session token.
    is_authenticated: ClassVar[bool] = True
    is_active: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False

    def get_id(self) -> str:
        return self.session_token

    def permission_codes(self) -> frozenset[str]:
        return self.permissions

    def has_permission(self, code: str) -> bool:
        return code in self.permissions

    def record(self) -> User:
        """The account as an ORM object, for views that change it (one query, then the identity map)."""
        return db.session.get(User, self.id)

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}>"


SIGNED_IN_USER_COLUMNS = (User.id, User.email, User.display_name, User.time_zone, User.email_verified_at,
                          User.created_at, User.last_login_at, User.current_subscription_id)


def signed_in_statement() -> Select:
    """The session row of a token hash (the bound parameter ``token_hash``), its user's columns and
    permission codes: one statement, built once per set of extensions, since building it costs more
    than running it."""
    return built_signed_in_statement(tuple(SIGNED_IN_EXTENSIONS))


@cache
def built_signed_in_statement(extensions: tuple[Callable[[Select], Select], ...]) -> Select:
    codes = (
        select(joined_codes(Permission.code))
        .join(RolePermission, RolePermission.permission_id == Permission.id)
        .join(UserRole, UserRole.role_id == RolePermission.role_id)
        .where(UserRole.user_id == User.id)
        .scalar_subquery()
    )
    query = (
        select(UserSession.id.label("session_id"), UserSession.last_seen_at, UserSession.expires_at,
               User.is_active, User.muted_usage_alerts, codes.label("permission_codes"), *SIGNED_IN_USER_COLUMNS)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.session_token_hash == bindparam("token_hash"), UserSession.is_active)
    )
    for extension in extensions:
        query = extension(query)
    return query


def resume_session(token: str) -> SignedInUser | None:
    """The user behind a live session token, or None when it is unknown, revoked or expired.

    Every request checks revocation, deactivation and both expiries on the row just read.
    """
    row = db.session.execute(signed_in_statement(), {"token_hash": hash_token(token)}).mappings().first()
    if row is None:
        return None
    now = utcnow()
    idle_limit = timedelta(minutes=current_app.config["SESSION_IDLE_TIMEOUT_MINUTES"])
    if not row["is_active"] or row["expires_at"] <= now or row["last_seen_at"] + idle_limit <= now:
        end_sessions(UserSession.id == row["session_id"], revoked_by=None)
        db.session.commit()
        return None
    if now - row["last_seen_at"] >= LAST_SEEN_RESOLUTION:
        # A plain UPDATE: no lock_version bump, so it never conflicts with an admin edit. In a
        # transaction of its own that holds the write lock from the start: on SQLite the read
        # above would otherwise make it fail whenever the worker wrote in between.
        write_transaction(lambda: db.session.execute(
            update(UserSession).where(UserSession.id == row["session_id"]).values(last_seen_at=now)
        ))
    values = dict(row)
    for checked in ("last_seen_at", "expires_at", "is_active"):
        del values[checked]
    user = {column.key: values.pop(column.key) for column in SIGNED_IN_USER_COLUMNS}
    return SignedInUser(
        **user,
        session_id=values.pop("session_id"),
        muted_usage_alerts=tuple(values.pop("muted_usage_alerts") or ()),
        permissions=frozenset((values.pop("permission_codes") or "").split()),
        session_token=token,
        extras=values,  # the columns SIGNED_IN_EXTENSIONS added
    )


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
