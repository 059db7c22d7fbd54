"""A user's own minions (create, rename, avatar, archive, delete, within the plan's quota) and the minion page.

Apart from services.py (the ledger and the board), which the training domain
imports: this module reads training's models, as webapp.quotas does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, null, or_, select
from sqlalchemy.orm import joinedload

from webapp import quotas
from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.minions.models import Minion, MinionXpEvent
from webapp.minions.services import BoardFilters, BoardRow, board_columns, scoped
from webapp.pagination import Page, paginate
from webapp.providers.models import AIModel, ModelVersion, UserProviderConfig
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob



class MinionError(Exception):
    """A minion change that is not allowed; nothing was changed. ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None, status: int = 409) -> None:
        super().__init__(message)
        self.field, self.status = field, status


def usable_models(user: User) -> list[AIModel]:
    """Models ``user`` may build a minion on: public reference models, external models of the
    providers they hold an enabled key for, and their own custom models."""
    keyed_providers = select(UserProviderConfig.provider_id).where(
        UserProviderConfig.user_id == user.id, UserProviderConfig.is_enabled,
        UserProviderConfig.api_key_ciphertext.is_not(None))
    return list(db.session.scalars(
        select(AIModel).where(AIModel.is_active, or_(
            and_(AIModel.model_type == "reference", AIModel.owner_user_id.is_(None)),
            and_(AIModel.model_type == "external", AIModel.provider_id.in_(keyed_providers)),
            and_(AIModel.model_type == "custom", AIModel.owner_user_id == user.id),
        )).order_by(AIModel.model_type, AIModel.name, AIModel.id)
    ))


def owned_minions(user: User, page: int, per_page: int) -> Page:
    """The user's minions, archived last, then by XP."""
    return paginate(
        select(Minion).options(joinedload(Minion.model), joinedload(Minion.model_version))
        .where(Minion.owner_user_id == user.id)
        .order_by((Minion.status == "retired").asc(), Minion.xp.desc(), Minion.id.asc()),
        page, per_page,
    )


def owned_minion(user: User, minion_id: int) -> Minion | None:
    """``user``'s minion, or None when it does not exist or is someone else's."""
    return db.session.scalars(
        select(Minion).where(Minion.id == minion_id, Minion.owner_user_id == user.id)
    ).first()


def _require_free_name(owner: User, name: str, minion: Minion | None = None) -> None:
    """Names are unique per owner whatever their case; the caller holds the owner's lock."""
    clash = select(Minion.id).where(Minion.owner_user_id == owner.id, func.lower(Minion.name) == name.lower())
    if minion is not None:
        clash = clash.where(Minion.id != minion.id)
    if db.session.scalar(clash.limit(1)) is not None:
        raise MinionError(f"You already have a minion named “{name}”.", field="name")


def create_minion(owner: User, name: str, model_id: int, avatar_url: str | None) -> Minion:
    """Create ``owner``'s minion within the plan's ``minions`` quota (raises QuotaExceeded), audited."""
    quotas.require(owner, "minions")
    _require_free_name(owner, name)
    model = next((m for m in usable_models(owner) if m.id == model_id), None)
    if model is None:
        raise MinionError("Choose one of the models listed.", field="model_id", status=422)
    minion = Minion(owner_user_id=owner.id, model_id=model.id, name=name, avatar_url=avatar_url,
                    attributes={}, xp=0, level=1, status="idle")
    db.session.add(minion)
    db.session.flush()
    record("minion.create", minion, {"name": name, "model": model.model_key, "avatar_url": avatar_url}, actor=owner)
    return minion


def rename_minion(minion: Minion, name: str, actor: User) -> None:
    if name == minion.name:
        return
    quotas.lock_owner(minion.owner)
    _require_free_name(minion.owner, name, minion)
    record("minion.rename", minion, {"name": [minion.name, name]}, actor=actor)
    minion.name = name
    db.session.flush()


def change_avatar(minion: Minion, avatar_url: str | None, actor: User) -> None:
    if avatar_url == minion.avatar_url:
        return
    record("minion.avatar", minion, {"avatar_url": [minion.avatar_url, avatar_url]}, actor=actor)
    minion.avatar_url = avatar_url
    db.session.flush()


def archive_minion(minion: Minion, actor: User) -> None:
    """Retire the minion: off the leaderboard, its ledger and jobs kept."""
    if minion.status == "retired":
        raise MinionError(f"{minion.name} is already archived.")
    if _active_job_ids(minion):
        raise MinionError(f"{minion.name} is training; wait for the job to end or cancel it first.")
    record("minion.archive", minion, {"status": [minion.status, "retired"]}, actor=actor)
    minion.status = "retired"
    db.session.flush()


def restore_minion(minion: Minion, actor: User) -> None:
    """Bring an archived minion back; it counts against the quota again (when archived ones do not)."""
    if minion.status != "retired":
        raise MinionError(f"{minion.name} is not archived.")
    terms = quotas.allowance(minion.owner)
    if not terms.quotas.get("minions_count_archived", False):
        quotas.require(minion.owner, "minions")
    record("minion.restore", minion, {"status": ["retired", "idle"]}, actor=actor)
    minion.status = "idle"
    db.session.flush()


def delete_minion(minion: Minion, actor: User) -> None:
    """Delete the minion and its XP ledger; refused while one of its jobs is queued or running."""
    active = _active_job_ids(minion)
    if active:
        raise MinionError(f"{minion.name} has an active training job (#{active[0]}); "
                          f"cancel it or wait for it to end before deleting.")
    record("minion.delete", minion, {"name": minion.name, "xp": minion.xp}, actor=actor)
    db.session.delete(minion)
    db.session.flush()


def _active_job_ids(minion: Minion) -> list[int]:
    return list(db.session.scalars(
        select(TrainingJob.id).where(TrainingJob.minion_id == minion.id,
                                     TrainingJob.status.in_(ACTIVE_JOB_STATUSES)).order_by(TrainingJob.id)
    ))


# --- the minion page ---------------------------------------------------------------------------


@dataclass
class MinionStanding:
    """Where the minion stands: all-time and weekly rank and the board page each is on (None when archived)."""

    all_time: BoardRow | None
    week: BoardRow | None


STANDING_WINDOWS = ("all", "week")


def standing(minion: Minion) -> MinionStanding:
    """The minion's rank and position on the all-time and weekly boards, as best_rank_of computes them (one query)."""
    if minion.status == "retired":
        return MinionStanding(None, None)
    row = db.session.execute(select(*(column for window in STANDING_WINDOWS
                                      for column in _rank_columns(minion, window)))).one()
    return MinionStanding(*(_rank_row(minion, *row[index * 3:index * 3 + 3])
                            for index in range(len(STANDING_WINDOWS))))


def _rank_columns(minion: Minion, window: str) -> tuple[Any, Any, Any]:
    """The minion's score on the ``window`` board (NULL when it is not on it), how many score more, and how
    many score the same with a smaller id: scalar subqueries."""
    filters = BoardFilters(window=window)
    key, score = board_columns(window)
    value = scoped(select(score), filters).where(key == minion.id).scalar_subquery()

    def counted(condition: Any) -> Any:
        return scoped(select(func.count()).select_from(key.table), filters).where(condition).scalar_subquery()

    return value, counted(score > value), counted(and_(score == value, key < minion.id))


def _rank_row(minion: Minion, value: int | None, above: int, tied_before: int) -> BoardRow | None:
    return None if value is None else BoardRow(minion, above + 1, above + tied_before + 1, value)


@dataclass
class XpDay:
    day: datetime
    gained: int
    total: int


def xp_history(minion: Minion, days: int = 30, now: datetime | None = None) -> list[XpDay]:
    """XP gained per day over the last ``days`` days from the ledger, with the running total."""
    now = now or utcnow()
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = select(MinionXpEvent.created_at, MinionXpEvent.delta).where(
        MinionXpEvent.minion_id == minion.id, MinionXpEvent.created_at >= start)
    # What came before the window, in the same round trip: one row with no date.
    earlier = select(null(), func.sum(MinionXpEvent.delta)).where(
        MinionXpEvent.minion_id == minion.id, MinionXpEvent.created_at < start)
    before, gained = 0, {}
    for created_at, delta in db.session.execute(recent.union_all(earlier)):
        if created_at is None:
            before = delta or 0
            continue
        key = created_at.date().isoformat()
        gained[key] = gained.get(key, 0) + delta
    history, total = [], int(before)
    for offset in range(days):
        day = start + timedelta(days=offset)
        total += gained.get(day.date().isoformat(), 0)
        history.append(XpDay(day, gained.get(day.date().isoformat(), 0), total))
    return history


def lineage(minion: Minion, limit: int = 20) -> list[ModelVersion]:
    """The minion's model version and its parents, newest first, each with the job that produced it (one query)."""
    if minion.model_version_id is None:
        return []
    chain = select(ModelVersion.id, ModelVersion.parent_version_id, literal(0).label("depth")).where(
        ModelVersion.id == minion.model_version_id).cte("lineage", recursive=True)
    chain = chain.union_all(
        select(ModelVersion.id, ModelVersion.parent_version_id, chain.c.depth + 1)
        .join(chain, ModelVersion.id == chain.c.parent_version_id).where(chain.c.depth < limit - 1)
    )
    return list(db.session.scalars(
        select(ModelVersion).join(chain, chain.c.id == ModelVersion.id)
        .options(joinedload(ModelVersion.training_job), joinedload(ModelVersion.model))
        .order_by(chain.c.depth)
    ).unique())


def minion_jobs(minion: Minion, page: int, per_page: int) -> Page:
    return paginate(
        select(TrainingJob).where(TrainingJob.minion_id == minion.id)
        .order_by(TrainingJob.queued_at.desc(), TrainingJob.id.desc()),
        page, per_page,
    )


def public_minion(minion_id: int) -> Minion | None:
    """Any minion by id with its owner and model (its public page is visible to every signed-in user)."""
    return db.session.scalars(
        select(Minion).options(joinedload(Minion.owner), joinedload(Minion.model), joinedload(Minion.model_version))
        .where(Minion.id == minion_id)
    ).first()
