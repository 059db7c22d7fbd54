"""Single-use tokens for email verification and password reset: the link carries the token, the database its hash."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from webapp.accounts.models import Token, User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.security import hash_token, new_token

PASSWORD_RESET = "password_reset"
EMAIL_VERIFICATION = "email_verification"


def issue_token(user: User, token_type: str, issued_by: User | None = None) -> str:
    """Add a token row for ``user`` and return the raw token for the link (never stored)."""
    raw = new_token()
    ttl = timedelta(minutes=current_app.config["TOKEN_TTL_MINUTES"][token_type])
    db.session.add(Token(
        user_id=user.id,
        type=token_type,
        token_hash=hash_token(raw),
        expires_at=utcnow() + ttl,
        issued_by_id=issued_by.id if issued_by else None,
    ))
    return raw


def usable_token(raw: str, token_type: str) -> Token | None:
    """The unused, unexpired token of this type for an active user, or None."""
    return db.session.scalar(
        select(Token)
        .join(User, User.id == Token.user_id)
        .where(
            Token.token_hash == hash_token(raw),
            Token.type == token_type,
            Token.used_at.is_(None),
            Token.expires_at > utcnow(),
            User.is_active,
        )
    )


def outstanding_tokens(user: User) -> list[Token]:
    """The user's tokens that could still be used, newest first, with who issued them."""
    return list(db.session.scalars(
        select(Token)
        .options(selectinload(Token.issued_by))
        .where(Token.user_id == user.id, Token.used_at.is_(None), Token.expires_at > utcnow())
        .order_by(Token.created_at.desc(), Token.id.desc())
    ))


def expire_tokens(user: User, token_type: str | None = None) -> int:
    """Expire the user's outstanding tokens (of one type, or all); returns how many."""
    now = utcnow()
    conditions = [Token.user_id == user.id, Token.used_at.is_(None), Token.expires_at > now]
    if token_type:
        conditions.append(Token.type == token_type)
    result = db.session.execute(
        update(Token)
        .where(*conditions)
        .values(expires_at=now, lock_version=Token.lock_version + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def use_token(token: Token) -> None:
    """Spend ``token`` and expire its siblings of the same type: a link works once."""
    token.used_at = utcnow()
    db.session.flush()
    expire_tokens(token.user, token.type)
