"""The support console's reads and rules; the account actions themselves live in webapp.accounts.services."""
from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import selectinload

from webapp.accounts.access import permission_codes
from webapp.accounts.models import AuditEvent, User
from webapp.db import escape_like
from webapp.extensions import db
from webapp.pagination import Page, paginate


def search_users(query: str, page: int, per_page: int) -> Page:
    """Users whose email or name contains ``query`` (all users when it is blank), by email.

    Written as ``lower(column) LIKE`` so PostgreSQL answers from the trigram GIN
    indexes on lower(email) and lower(display_name) instead of scanning every user;
    ordered by lower(email), the unique index, so a blank search reads one page of it.
    """
    statement = select(User).options(selectinload(User.roles)).order_by(func.lower(User.email), User.id)
    query = query.strip().lower()
    if query:
        pattern = f"%{escape_like(query)}%"
        statement = statement.where(or_(
            func.lower(User.email).like(pattern, escape="\\"),
            func.lower(User.display_name).like(pattern, escape="\\"),
        ))
    return paginate(statement, page, per_page)


def user_for_staff(user_id: int) -> User | None:
    return db.session.scalar(select(User).options(selectinload(User.roles)).where(User.id == user_id))


def may_act_on(actor: User, target: User) -> bool:
    """Staff act only on accounts holding no permission they lack themselves (support cannot lock an admin)."""
    return permission_codes(target) <= permission_codes(actor)


def audit_history(user: User, page: int, per_page: int) -> Page:
    """What happened to the account and what its owner did, newest first."""
    statement = (
        select(AuditEvent)
        .options(selectinload(AuditEvent.actor))
        .where(or_(
            and_(AuditEvent.object_type == User.__tablename__, AuditEvent.object_id == user.id),
            AuditEvent.actor_id == user.id,
        ))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    return paginate(statement, page, per_page)
