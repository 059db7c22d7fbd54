"""The XP ledger and the leaderboard.

Ranks come from the database: ``RANK() OVER (ORDER BY score DESC)``, where the
score is the minion's xp (all time) or the XP it gained in the window (this week,
this month). Minions with equal scores share a displayed rank; rows are listed
by score, then by id (the older minion first), so every page is deterministic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import selectinload

from webapp.accounts.audit import record
from webapp.db import utcnow
from webapp.extensions import db
from webapp.minions.models import Minion, MinionXpEvent
from webapp.minions.xp import level_for_xp
from webapp.providers.models import AIModel, Provider

JOB_SUCCESS_XP = 150
JOB_SUCCESS_REASON = "training_job.succeeded"
DEFAULT_AVATAR_COLOR = "#3b4cca"
# Only a hex colour goes into the avatar's style attribute.
AVATAR_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")
WINDOWS = {"all": "All time", "month": "This month", "week": "This week"}


# --- the ledger ---------------------------------------------------------------------------


def award_xp(minion: Minion, delta: int, reason: str, training_job: Any = None) -> bool:
    """Add an XP event and the same delta to ``minion.xp``, in the caller's transaction.

    Returns False (nothing changed) when this (minion, reason, job) was already awarded;
    the unique constraint on minion_xp_events backs the check under concurrency.
    """
    job_id = training_job.id if training_job is not None else None
    if job_id is not None and db.session.scalar(
        select(MinionXpEvent.id).filter_by(minion_id=minion.id, reason=reason, training_job_id=job_id)
    ):
        return False
    db.session.add(MinionXpEvent(minion_id=minion.id, delta=delta, reason=reason, training_job_id=job_id))
    minion.xp += delta
    minion.level = level_for_xp(minion.xp)
    db.session.flush()
    return True


@dataclass
class XpMismatch:
    minion_id: int
    name: str
    xp: int
    ledger: int


def xp_mismatches() -> list[XpMismatch]:
    """Minions whose xp differs from the sum of their XP events (one aggregate query)."""
    totals = (
        select(MinionXpEvent.minion_id, func.sum(MinionXpEvent.delta).label("total"))
        .group_by(MinionXpEvent.minion_id).subquery()
    )
    ledger = func.coalesce(totals.c.total, 0)
    rows = db.session.execute(
        select(Minion.id, Minion.name, Minion.xp, ledger)
        .outerjoin(totals, totals.c.minion_id == Minion.id)
        .where(Minion.xp != ledger).order_by(Minion.id)
    )
    return [XpMismatch(minion_id, name, xp, int(total)) for minion_id, name, xp, total in rows]


def recompute_xp(minion: Minion) -> dict[str, list[int]]:
    """Set xp and level from the minion's ledger; the changed fields as [old, new]."""
    total = db.session.scalar(
        select(func.coalesce(func.sum(MinionXpEvent.delta), 0)).where(MinionXpEvent.minion_id == minion.id)
    )
    before = {"xp": minion.xp, "level": minion.level}
    minion.xp, minion.level = total, level_for_xp(total)
    return {key: [old, getattr(minion, key)] for key, old in before.items() if old != getattr(minion, key)}


def repair_xp(mismatches: list[XpMismatch]) -> None:
    """Set each minion's xp (and level) to its ledger sum, audited."""
    for mismatch in mismatches:
        minion = db.session.get(Minion, mismatch.minion_id)
        minion.xp = mismatch.ledger
        minion.level = level_for_xp(mismatch.ledger)
        record("minion.xp_repair", minion, {"xp": [mismatch.xp, mismatch.ledger]})


# --- the leaderboard ------------------------------------------------------------------------


@dataclass
class BoardFilters:
    window: str = "all"
    model_id: int | None = None
    provider_id: int | None = None
    query: str = ""


@dataclass
class BoardRow:
    minion: Minion
    rank: int
    position: int
    gained: int

    @property
    def level(self) -> int:
        return level_for_xp(self.minion.xp)

    @property
    def initials(self) -> str:
        """The avatar's fallback: the first letters of up to two words of the name."""
        return "".join(word[0] for word in self.minion.name.split()[:2]).upper() or "?"

    @property
    def avatar_color(self) -> str:
        color = (self.minion.attributes or {}).get("color", "")
        return color if AVATAR_COLOR.fullmatch(str(color)) else DEFAULT_AVATAR_COLOR


def window_start(window: str, now: datetime | None = None) -> datetime | None:
    """Start of the window in UTC: Monday 00:00 for a week, the 1st 00:00 for a month, None for all time."""
    now = now or utcnow()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "week":
        return midnight - timedelta(days=midnight.weekday())
    if window == "month":
        return midnight.replace(day=1)
    return None


def ranked_statement(filters: BoardFilters, now: datetime | None = None) -> Select:
    """Minion ids with rank, position and window gain, ordered for the board, before the name search."""
    start = window_start(filters.window, now)
    if start is None:
        score = Minion.xp
        statement = select(Minion.id.label("minion_id"), score.label("gained"))
    else:
        gains = (
            select(MinionXpEvent.minion_id, func.sum(MinionXpEvent.delta).label("gained"))
            .where(MinionXpEvent.created_at >= start).group_by(MinionXpEvent.minion_id).subquery()
        )
        score = gains.c.gained
        statement = select(Minion.id.label("minion_id"), score.label("gained")).join(
            gains, gains.c.minion_id == Minion.id
        )
    if filters.model_id:
        statement = statement.where(Minion.model_id == filters.model_id)
    if filters.provider_id:
        statement = statement.join(AIModel, AIModel.id == Minion.model_id).where(
            AIModel.provider_id == filters.provider_id
        )
    return statement.add_columns(
        func.rank().over(order_by=score.desc()).label("rank"),
        func.row_number().over(order_by=(score.desc(), Minion.id.asc())).label("position"),
    )


def leaderboard_page(filters: BoardFilters, page: int, per_page: int) -> tuple[list[BoardRow], bool]:
    """One page of the board and whether another follows; a constant number of queries."""
    ranked = ranked_statement(filters)
    if filters.query:
        inner = ranked.subquery()
        names = select(Minion.id).where(Minion.name.ilike(f"%{escape_like(filters.query)}%", escape="\\"))
        statement = (
            select(inner.c.minion_id, inner.c.rank, inner.c.position, inner.c.gained)
            .where(inner.c.minion_id.in_(names.scalar_subquery()))
            .order_by(inner.c.gained.desc(), inner.c.minion_id.asc())
        )
    else:
        # Ordered like the window itself, at the same level, so PostgreSQL walks the
        # (xp DESC, id) index and stops after the page instead of ranking every minion.
        statement = ranked.order_by(ranked.selected_columns.gained.desc(), Minion.id.asc())
    rows = db.session.execute(statement.limit(per_page + 1).offset((page - 1) * per_page)).all()
    minions = {
        minion.id: minion for minion in db.session.scalars(
            select(Minion).where(Minion.id.in_([row.minion_id for row in rows[:per_page]]))
            .options(selectinload(Minion.owner), selectinload(Minion.model))
        )
    }
    board = [BoardRow(minions[row.minion_id], row.rank, row.position, int(row.gained or 0)) for row in rows[:per_page]]
    return board, len(rows) > per_page


def best_rank_of(owner_id: int, filters: BoardFilters) -> BoardRow | None:
    """The owner's best-placed minion on the board as filtered (ignoring the name search), if any."""
    if window_start(filters.window) is None:
        return best_all_time_rank(owner_id, filters)
    ranked = ranked_statement(filters).subquery()
    row = db.session.execute(
        select(ranked.c.minion_id, ranked.c.rank, ranked.c.position, ranked.c.gained)
        .join(Minion, Minion.id == ranked.c.minion_id)
        .where(Minion.owner_user_id == owner_id).order_by(ranked.c.position).limit(1)
    ).first()
    if row is None:
        return None
    return BoardRow(db.session.get(Minion, row.minion_id), row.rank, row.position, int(row.gained or 0))


def best_all_time_rank(owner_id: int, filters: BoardFilters) -> BoardRow | None:
    """The same rank as RANK() over xp, from two indexed queries instead of ranking every minion."""
    scope = []
    if filters.model_id:
        scope.append(Minion.model_id == filters.model_id)
    if filters.provider_id:
        scope.append(Minion.model_id.in_(select(AIModel.id).where(AIModel.provider_id == filters.provider_id)))
    best = db.session.scalars(
        select(Minion).where(Minion.owner_user_id == owner_id, *scope).order_by(Minion.xp.desc(), Minion.id).limit(1)
    ).first()
    if best is None:
        return None
    above, tied_before = db.session.execute(
        select(func.count().filter(Minion.xp > best.xp),
               func.count().filter(and_(Minion.xp == best.xp, Minion.id < best.id)))
        .where(Minion.xp >= best.xp, *scope)
    ).one()
    return BoardRow(best, above + 1, above + tied_before + 1, best.xp)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_choices() -> tuple[list[AIModel], list[Provider]]:
    """Models and providers to filter by (both small catalogue tables)."""
    models = list(db.session.scalars(select(AIModel).where(AIModel.is_active.is_(True)).order_by(AIModel.name)))
    providers = list(db.session.scalars(select(Provider).order_by(Provider.name)))
    return models, providers
