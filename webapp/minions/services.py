"""The XP ledger and the leaderboard.

Ranks are ``RANK() OVER (ORDER BY score DESC)``, where the score is the minion's
xp (all time) or the XP it gained in the window (this week, this month, rolled up
in minion_xp_gains as XP arrives). Minions with equal scores share a displayed
rank; rows are listed by score, then by id (the older minion first), so every
page is deterministic.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CTE, ScalarSelect, Select, and_, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.db import dataclass_of, escape_like, json_rows, rows_of, utcnow
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


@dataclass(frozen=True)
class MinionCard:
    """What a listing shows of a minion: its avatar (name, avatar_url, color), XP, owner and model."""

    id: int
    name: str
    avatar_url: str | None
    color: Any
    xp: int
    owner_user_id: int
    owner_name: str
    model_name: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MinionCard:
        """The card (or a subclass's) from a JSON row read with :func:`with_card_columns`."""
        return dataclass_of(cls, row)


def with_card_columns(statement: Select) -> Select:
    """``statement`` (over minions, with the id) with the rest of a :class:`MinionCard`'s columns."""
    return statement.add_columns(
        Minion.name, Minion.avatar_url, Minion.attributes["color"].as_string().label("color"), Minion.xp,
        Minion.owner_user_id, User.display_name.label("owner_name"), AIModel.name.label("model_name"),
    ).join(User, User.id == Minion.owner_user_id).join(AIModel, AIModel.id == Minion.model_id)


@dataclass(frozen=True)
class Place:
    """Where a minion stands on a board: the rank it shares with equal scores, and its position in the listing."""

    rank: int
    position: int

    @classmethod
    def of(cls, above: int, tied_before: int) -> Place:
        """From how many score more, and how many score the same and are listed first (the older minions)."""
        return cls(above + 1, above + tied_before + 1)


@dataclass(frozen=True)
class BoardRow:
    minion: MinionCard
    rank: int
    position: int
    gained: int

    @property
    def level(self) -> int:
        return level_for_xp(self.minion.xp)


@dataclass(frozen=True)
class Board:
    """Rows of the board and whether more follow; when asked, the viewer's best minion and the filters' choices."""

    rows: list[BoardRow]
    has_next: bool
    mine: BoardRow | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    providers: list[dict[str, Any]] = field(default_factory=list)


def initials(minion: Any) -> str:
    """The avatar's fallback: the first letters of up to two words of the name."""
    return "".join(word[0] for word in minion.name.split()[:2]).upper() or "?"


def avatar_color(minion: Any) -> str:
    color = str(minion.color)
    return color if AVATAR_COLOR.fullmatch(color) else DEFAULT_AVATAR_COLOR


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


def in_board_order(filters: BoardFilters, owner_id: int | None = None) -> Select:
    """(id, score) of the board's minions (or of one owner's), by score, then the older minion first."""
    key, score = board_columns(filters.window)
    return scoped(select(key.label("id"), score.label("score")), filters, owner_id=owner_id) \
        .order_by(score.desc(), key.asc())


def listing(filters: BoardFilters, offset: int, limit: int) -> Select:
    """(id, score) of ``limit`` rows of the board from ``offset``; with a name search, also each row's rank and
    board_position on the whole board, which the search does not change.

    Without a search the rows come from walking the (score DESC, id) index up to the page, reading only
    ids and scores (no window function over every row above it): see :func:`ranked` for their ranks.
    """
    if not filters.query:
        return in_board_order(filters).limit(limit).offset(offset)
    key, score = board_columns(filters.window)
    board = scoped(select(key.label("id"), score.label("score")), filters).add_columns(
        func.rank().over(order_by=score.desc()).label("rank"),
        func.row_number().over(order_by=(score.desc(), key.asc())).label("board_position"),
    ).subquery()
    names = select(Minion.id).where(Minion.name.ilike(f"%{escape_like(filters.query)}%", escape="\\"))
    return (select(board).where(board.c.id.in_(names.scalar_subquery()))
            .order_by(board.c.score.desc(), board.c.id.asc()).limit(limit).offset(offset))


def card_rows(listed: CTE) -> ScalarSelect:
    """The ``listed`` rows (a CTE of :func:`listing` or :func:`in_board_order`) with their minions' cards, the
    late row lookup: JSON rows in the board's order."""
    cards = with_card_columns(select(listed).join(Minion, Minion.id == listed.c.id))
    return json_rows(cards, listed.c.score.desc(), listed.c.id)


def first_listed(listed: CTE, column: Any) -> ScalarSelect:
    """``column`` of the first of the ``listed`` rows (NULL when there is none), a scalar subquery."""
    return select(column).order_by(listed.c.score.desc(), listed.c.id).limit(1).scalar_subquery()


def board_count(filters: BoardFilters, condition: Any) -> ScalarSelect:
    """How many minions on the board meet ``condition`` (over ``board_columns``), a scalar subquery."""
    key, _ = board_columns(filters.window)
    return scoped(select(func.count()).select_from(key.table), filters).where(condition).scalar_subquery()


def scoring_above(filters: BoardFilters, value: Any) -> ScalarSelect:
    """How many minions on the board score more than ``value``, a scalar subquery."""
    return board_count(filters, board_columns(filters.window)[1] > value)


def tied_before(filters: BoardFilters, minion_id: Any, value: Any) -> ScalarSelect:
    """How many minions on the board score ``value`` and are listed before ``minion_id`` (the older ones),
    counted in their own index range: a scalar subquery."""
    key, score = board_columns(filters.window)
    return board_count(filters, and_(score == value, key < minion_id))


def leaderboard_page(filters: BoardFilters, page: int, per_page: int, pages: int = 1, viewer_id: int | None = None,
                     choices: bool = False) -> Board:
    """``pages`` pages of the board from ``page`` and whether another follows; with ``viewer_id``, that viewer's
    best-placed minion on the board as filtered (ignoring the name search); with ``choices``, the models and
    providers to filter by. One query, whatever the size of the board.
    """
    offset, limit = (page - 1) * per_page, per_page * pages
    listed = listing(filters, offset, limit + 1).cte("board_page")
    columns = {"rows": card_rows(listed)}
    if not filters.query:
        columns["ties_before"] = tied_before(
            filters, first_listed(listed, listed.c.id), first_listed(listed, listed.c.score))
    if viewer_id is not None:
        unsearched = replace(filters, query="")
        best = in_board_order(unsearched, owner_id=viewer_id).limit(1).cte("best_of_viewer")
        best_score = first_listed(best, best.c.score)
        columns["mine"] = card_rows(best)
        columns["mine_above"] = scoring_above(unsearched, best_score)
        columns["mine_tied_before"] = tied_before(unsearched, first_listed(best, best.c.id), best_score)
    if choices:
        columns["models"] = json_rows(select(AIModel.id, AIModel.name).where(AIModel.is_active.is_(True)),
                                      AIModel.name, AIModel.id)
        columns["providers"] = json_rows(select(Provider.id, Provider.name), Provider.name, Provider.id)
    row = db.session.execute(select(*(column.label(name) for name, column in columns.items()))).one()._mapping
    board = ranked(rows_of(row["rows"]), offset, row.get("ties_before"))
    mine = rows_of(row["mine"]) if viewer_id is not None else []
    return Board(
        rows=board[:limit], has_next=len(board) > limit,
        mine=board_row(mine[0], Place.of(row["mine_above"], row["mine_tied_before"])) if mine else None,
        models=rows_of(row["models"]) if choices else [], providers=rows_of(row["providers"]) if choices else [],
    )


def ranked(rows: list[dict[str, Any]], offset: int, ties_before: int | None) -> list[BoardRow]:
    """The listed rows from ``offset`` with their ranks, as RANK() over the whole board would give them.

    A name search's rows carry their own (ties_before is None). Otherwise equal scores share the rank
    of the first of them, so the first row's rank is its position less the ties listed before it; each
    later row either ties the row above or starts a rank at its position.
    """
    if ties_before is None:
        return [board_row(row, Place(row["rank"], row["board_position"])) for row in rows]
    board, rank = [], offset + 1 - ties_before
    for number, row in enumerate(rows):
        position = offset + number + 1
        if number and row["score"] != rows[number - 1]["score"]:
            rank = position
        board.append(board_row(row, Place(rank, position)))
    return board


def board_row(row: dict[str, Any], place: Place) -> BoardRow:
    return BoardRow(MinionCard.from_row(row), place.rank, place.position, int(row["score"] or 0))


# board_state's read, built once: every refresh of every board runs it, and building it cost more than running it.
LATEST_CHANGES = select(*[select(func.max(column)).scalar_subquery()
                          for column in (MinionXpEvent.id, Minion.updated_at, User.updated_at, AIModel.updated_at)])


def board_state(filters: BoardFilters) -> tuple[Any, ...]:
    """Whether anything on any leaderboard changed, in one query of indexed maxima.

    XP moves only through the ledger (award_xp), so its latest id covers every score, rank and
    window gain; a minion's own change (name, avatar, model, retirement, a new minion) moves the
    minions' latest updated_at, an owner's new name the users', a model's the models'. The
    window's start moves the week and month boards on to their next period. Not seen: a row
    deleted outright (the admin's delete), until the next change of any of these.
    """
    return (*db.session.execute(LATEST_CHANGES).one(), window_start(filters.window))
