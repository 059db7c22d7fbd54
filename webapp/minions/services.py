"""The XP ledger and the leaderboard.

Ranks are ``RANK() OVER (ORDER BY score DESC)``, where the score is the minion's
xp (all time) or the XP it gained in the window (this week, this month, rolled up
in minion_xp_gains as XP arrives). Minions with equal scores share a displayed
rank; rows are listed by score, then by id (the older minion first), so every
page is deterministic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import selectinload

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.db import escape_like, utcnow
from webapp.extensions import db
from webapp.minions.models import XP_PERIODS, Minion, MinionXpEvent, MinionXpGain
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
    """Add an XP event and the same delta to ``minion.xp`` and its week and month gains, in the caller's transaction.

    Returns False (nothing changed) when this (minion, reason, job) was already awarded;
    the unique constraint on minion_xp_events backs the check under concurrency.
    """
    job_id = training_job.id if training_job is not None else None
    if job_id is not None and db.session.scalar(
        select(MinionXpEvent.id).filter_by(minion_id=minion.id, reason=reason, training_job_id=job_id)
    ):
        return False
    now = utcnow()
    db.session.add(MinionXpEvent(minion_id=minion.id, delta=delta, reason=reason, training_job_id=job_id,
                                 created_at=now, updated_at=now))
    minion.xp += delta
    minion.level = level_for_xp(minion.xp)
    db.session.flush()
    add_gains([{"minion_id": minion.id, "period": period, "period_start": window_start(period, now), "gained": delta}
               for period in XP_PERIODS])
    return True


def add_gains(rows: list[dict[str, Any]]) -> None:
    """Add each row's ``gained`` to its (period, period_start, minion_id) rollup row, creating it if needed.

    One upsert, so concurrent awards to the same minion add up instead of colliding.
    """
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(MinionXpGain).values(rows)
    gains = MinionXpGain.__table__.c
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[gains.period, gains.period_start, gains.minion_id],
        set_={"gained": gains.gained + statement.excluded.gained, "updated_at": utcnow()},
    ))


def gains_from_events(events: Any) -> list[dict[str, Any]]:
    """The rollup rows for ``events`` given as (minion_id, delta, created_at): what a seed writes with its ledger."""
    totals: dict[tuple[str, datetime, int], int] = {}
    for minion_id, delta, created_at in events:
        for period in XP_PERIODS:
            key = (period, window_start(period, created_at), minion_id)
            totals[key] = totals.get(key, 0) + delta
    return [{"period": period, "period_start": start, "minion_id": minion_id, "gained": gained}
            for (period, start, minion_id), gained in totals.items()]


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


def initials(minion: Minion) -> str:
    """The avatar's fallback: the first letters of up to two words of the name."""
    return "".join(word[0] for word in minion.name.split()[:2]).upper() or "?"


def avatar_color(minion: Minion) -> str:
    color = (minion.attributes or {}).get("color", "")
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


def board_columns(window: str) -> tuple[Any, Any]:
    """(minion id, score) of the board's rows: minions by xp for all time, else the window's rollup rows."""
    if window_start(window) is None:
        return Minion.id, Minion.xp
    return MinionXpGain.minion_id, MinionXpGain.gained


def scoped(statement: Select, filters: BoardFilters, owner_id: int | None = None, now: datetime | None = None) -> Select:
    """``statement`` (over ``board_columns``) limited to the window, model, provider and owner asked for,
    without archived minions."""
    start = window_start(filters.window, now)
    if start is not None:
        statement = statement.where(MinionXpGain.period == filters.window, MinionXpGain.period_start == start)
        statement = statement.join(Minion, Minion.id == MinionXpGain.minion_id)
    # Archived minions keep their ledger but leave the board.
    statement = statement.where(Minion.status != "retired")
    if filters.model_id:
        statement = statement.where(Minion.model_id == filters.model_id)
    if filters.provider_id:
        statement = statement.where(
            Minion.model_id.in_(select(AIModel.id).where(AIModel.provider_id == filters.provider_id))
        )
    if owner_id:
        statement = statement.where(Minion.owner_user_id == owner_id)
    return statement


def ranked_statement(filters: BoardFilters, now: datetime | None = None) -> Select:
    """Minion ids with rank, position and window gain, before the name search."""
    key, score = board_columns(filters.window)
    return scoped(select(key.label("minion_id"), score.label("gained")), filters, now=now).add_columns(
        func.rank().over(order_by=score.desc()).label("rank"),
        func.row_number().over(order_by=(score.desc(), key.asc())).label("position"),
    )


def leaderboard_page(filters: BoardFilters, page: int, per_page: int, pages: int = 1) -> tuple[list[BoardRow], bool]:
    """``pages`` pages of the board from ``page`` and whether another follows; a constant number of queries."""
    offset, per_page = (page - 1) * per_page, per_page * pages
    if filters.query:
        inner = ranked_statement(filters).subquery()
        names = select(Minion.id).where(Minion.name.ilike(f"%{escape_like(filters.query)}%", escape="\\"))
        rows = db.session.execute(
            select(inner.c.minion_id, inner.c.rank, inner.c.position, inner.c.gained)
            .where(inner.c.minion_id.in_(names.scalar_subquery()))
            .order_by(inner.c.gained.desc(), inner.c.minion_id.asc())
            .limit(per_page + 1).offset(offset)
        ).all()
        ranked = [(row.minion_id, row.rank, row.position, row.gained) for row in rows]
    else:
        ranked = ranked_page(filters, offset, per_page + 1)
    minions = {
        minion.id: minion for minion in db.session.scalars(
            select(Minion).where(Minion.id.in_([row[0] for row in ranked[:per_page]]))
            .options(selectinload(Minion.owner), selectinload(Minion.model))
        )
    }
    board = [BoardRow(minions[minion_id], rank, position, int(gained or 0))
             for minion_id, rank, position, gained in ranked[:per_page]]
    return board, len(ranked) > per_page


def ranked_page(filters: BoardFilters, offset: int, limit: int) -> list[tuple[int, int, int, int]]:
    """(minion id, rank, position, score) for ``limit`` rows from ``offset``, without ranking the rows before.

    The rows come from walking the (score DESC, id) index, reading only ids and
    scores up to the page (no window function over every row above it). Equal
    scores share the rank of the first of them, so the first row's rank is its
    position less the ties listed before it, counted in its own index range; each
    later row on the page either ties the row above or starts a rank at its position.
    """
    key, score = board_columns(filters.window)
    rows = db.session.execute(
        scoped(select(key, score), filters).order_by(score.desc(), key.asc()).limit(limit).offset(offset)
    ).all()
    if not rows:
        return []
    first_id, first_score = rows[0]
    ties_before = db.session.scalar(
        scoped(select(func.count()).select_from(key.table), filters).where(score == first_score, key < first_id)
    )
    ranked, rank = [], offset + 1 - ties_before
    for number, (minion_id, value) in enumerate(rows):
        position = offset + number + 1
        if number and value != rows[number - 1][1]:
            rank = position
        ranked.append((minion_id, rank, position, value))
    return ranked


def best_rank_of(owner_id: int, filters: BoardFilters) -> BoardRow | None:
    """The owner's best-placed minion on the board as filtered (ignoring the name search), if any.

    The same rank as RANK() over the score, from indexed queries instead of ranking every minion.
    """
    key, score = board_columns(filters.window)
    best = db.session.execute(
        scoped(select(key, score), filters, owner_id=owner_id).order_by(score.desc(), key.asc()).limit(1)
    ).first()
    if best is None:
        return None
    best_id, best_score = best
    above, tied_before = db.session.execute(
        scoped(select(func.count().filter(score > best_score),
                      func.count().filter(and_(score == best_score, key < best_id))).select_from(key.table), filters)
        .where(score >= best_score)
    ).one()
    return BoardRow(db.session.get(Minion, best_id), above + 1, above + tied_before + 1, best_score)


def board_state(filters: BoardFilters) -> tuple[Any, ...]:
    """Whether anything on any leaderboard changed, in one query of indexed maxima.

    XP moves only through the ledger (award_xp), so its latest id covers every score, rank and
    window gain; a minion's own change (name, avatar, model, retirement, a new minion) moves the
    minions' latest updated_at, an owner's new name the users', a model's the models'. The
    window's start moves the week and month boards on to their next period. Not seen: a row
    deleted outright (the admin's delete), until the next change of any of these.
    """
    latest = [select(func.max(column)).scalar_subquery()
              for column in (MinionXpEvent.id, Minion.updated_at, User.updated_at, AIModel.updated_at)]
    return (*db.session.execute(select(*latest)).one(), window_start(filters.window))


def filter_choices() -> tuple[list[AIModel], list[Provider]]:
    """Models and providers to filter by (both small catalogue tables)."""
    models = list(db.session.scalars(select(AIModel).where(AIModel.is_active.is_(True)).order_by(AIModel.name)))
    providers = list(db.session.scalars(select(Provider).order_by(Provider.name)))
    return models, providers

