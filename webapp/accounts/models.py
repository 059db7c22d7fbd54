"""Users, RBAC, server-side sessions, one-time tokens and the audit trail."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, func, select, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk, non_negative, trigram_index
from webapp.extensions import db

TOKEN_TYPES = ("email_verification", "password_reset")


class UserRole(TimestampMixin, db.Model):
    __tablename__ = "user_roles"
    __table_args__ = (db.UniqueConstraint("user_id", "role_id"),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    role_id: Mapped[int] = mapped_column(fk("roles.id", "CASCADE"), index=True)

    # The link row as a record of its own (the admin edits it); User.roles covers the same rows.
    user = relationship("User", overlaps="roles")
    role = relationship("Role", overlaps="roles")


class RolePermission(TimestampMixin, db.Model):
    __tablename__ = "role_permissions"
    __table_args__ = (db.UniqueConstraint("role_id", "permission_id"),)

    role_id: Mapped[int] = mapped_column(fk("roles.id", "CASCADE"), index=True)
    permission_id: Mapped[int] = mapped_column(fk("permissions.id", "CASCADE"), index=True)

    role = relationship("Role", overlaps="permissions")
    permission = relationship("Permission", overlaps="permissions")


class Permission(TimestampMixin, db.Model):
    __tablename__ = "permissions"

    code: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")

    def __str__(self) -> str:
        return self.code


class Role(TimestampMixin, db.Model):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")
    permissions: Mapped[list[Permission]] = relationship(
        secondary="role_permissions", order_by="Permission.code"
    )

    def __str__(self) -> str:
        return self.name


class User(TimestampMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        non_negative("failed_login_count"),
        # The leaderboard's conditional refresh asks for the latest change of any owner's name.
        Index("ix_users_updated_at", "updated_at"),
    )

    email: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    email_verified_at: Mapped[datetime | None]
    failed_login_count: Mapped[int] = mapped_column(default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    # An IANA zone name; every time the console shows this user is in it (webapp/times.py).
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # A shortcut for the live subscription; the state itself lives in user_subscriptions.
    current_subscription_id: Mapped[int | None] = mapped_column(
        fk("user_subscriptions.id", "SET NULL", use_alter=True), index=True
    )
    # Metered quota keys ("tokens", ...) whose 50/80/100% usage alerts the user switched off.
    muted_usage_alerts: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")

    roles: Mapped[list[Role]] = relationship(secondary="user_roles", order_by="Role.name")
    current_subscription = relationship(
        "UserSubscription", foreign_keys=[current_subscription_id], post_update=True
    )

    # Flask-Login, for the sign-in request only (later requests get a SignedInUser): the identity kept in
    # the cookie is the opaque session token, never the user id, so revoking the session row signs the browser out.
    session_token = None
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str | None:
        return self.session_token

    def permission_codes(self) -> frozenset[str]:
        """The user's permissions through their roles, loaded once per object (the signed-in user's come with the session)."""
        cached = getattr(self, "_permission_codes", None)
        if cached is None:
            cached = frozenset(db.session.scalars(
                select(Permission.code)
                .join(RolePermission, RolePermission.permission_id == Permission.id)
                .join(UserRole, UserRole.role_id == RolePermission.role_id)
                .where(UserRole.user_id == self.id)
            ))
            self._permission_codes = cached
        return cached

    def has_permission(self, code: str) -> bool:
        return code in self.permission_codes()

    def __str__(self) -> str:
        return f"{self.display_name} <{self.email}>"


# Case-insensitive uniqueness enforced by the database itself, on both backends.
Index("uq_users_email_lower", func.lower(User.email), unique=True)


# The admin's user list, newest first, pages through this index without sorting the table.
Index("ix_users_created_at_id", User.created_at, User.id)
trigram_index(User.email)
trigram_index(User.display_name)


class UserSession(TimestampMixin, db.Model):
    """A signed-in browser: the cookie holds the token, the database only its hash."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id_is_active", "user_id", "is_active"),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    session_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(fk("users.id", "SET NULL"), index=True)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    revoked_by: Mapped[User | None] = relationship(foreign_keys=[revoked_by_id])

    def __str__(self) -> str:
        return f"#{self.id} from {self.ip_address or 'an unknown address'}{'' if self.is_active else ' (ended)'}"


class Token(TimestampMixin, db.Model):
    """Single-use email verification and password reset tokens, stored hashed."""

    __tablename__ = "tokens"
    __table_args__ = (choice_check("type", TOKEN_TYPES),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    issued_by_id: Mapped[int | None] = mapped_column(fk("users.id", "SET NULL"), index=True)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    issued_by: Mapped[User | None] = relationship(foreign_keys=[issued_by_id])


class AuditEvent(TimestampMixin, db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_object_type_object_id", "object_type", "object_id"),
        Index("ix_audit_events_created_at", "created_at"),
    )

    actor_id: Mapped[int | None] = mapped_column(fk("users.id", "SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[int | None]
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ip_address: Mapped[str | None] = mapped_column(String(45))

    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
