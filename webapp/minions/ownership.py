"""A user's own minions (create, rename, avatar, archive, delete, within the plan's quota) and the minion page.

Apart from services.py (the ledger and the board), which the training domain
imports: this module reads training's models, as webapp.quotas does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ScalarSelect, and_, func, literal, or_, select
from sqlalchemy.orm import joinedload

from webapp import quotas
from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.db import json_rows, rows_of, utc_day, utcnow
from webapp.extensions import db
from webapp.minions.models import Minion, MinionXpEvent
from webapp.minions.services import (
    BoardFilters, MinionCard, Place, board_columns, scoped, scoring_above, tied_before, with_card_columns,
)
from webapp.pagination import Page, page_of, page_slice, paginate
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


@dataclass(frozen=True)
class MinionProfile(MinionCard):
    """What the minion page shows of the minion; its edit form starts from the name and avatar_url."""

    level: int
    status: str
    model_version: str | None


@dataclass(frozen=True)
class MinionStanding:
    """Where the minion stands on the all-time and weekly boards (None when it is not on one)."""

    all_time: Place | None
    week: Place | None


STANDING_WINDOWS = ("all", "week")


@dataclass(frozen=True)
class XpDay:
    day: datetime
    gained: int
    total: int


@dataclass(frozen=True)
class LineageVersion:
    model_name: str
    version: str
    stage: str
    training_job_id: int | None
    training_job_name: str | None
    created_on: date

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LineageVersion:
        return cls(row["model_name"], row["version"], row["stage"], row["training_job_id"],
                   row["training_job_name"], date.fromisoformat(row["created_on"]))


@dataclass(frozen=True)
class JobLine:
    id: int
    name: str
    status: str
    queued_on: date

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobLine:
        return cls(row["id"], row["name"], row["status"], date.fromisoformat(row["queued_on"]))


@dataclass(frozen=True)
class MinionPage:
    """A minion's page as one viewer sees it: the jobs only for its owner (None for anyone else)."""

    minion: MinionProfile
    standing: MinionStanding
    history: list[XpDay]
    lineage: list[LineageVersion]
    jobs: Page | None


def minion_page(minion_id: int, viewer_id: int, page: int, per_page: int, days: int = 30) -> MinionPage | None:
    """Any minion's page (public to every signed-in user), or None when there is no such minion: one query.

    The standing, the XP per day over the last ``days`` days, the model lineage and (for its owner) the
    ``page``-th page of its jobs are scalar subqueries beside the minion's own columns.
    """
    start = (utcnow() - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    columns = {
        "minion": json_rows(with_card_columns(
            select(Minion.id, Minion.level, Minion.status, ModelVersion.version.label("model_version"))
            .outerjoin(ModelVersion, ModelVersion.id == Minion.model_version_id).where(Minion.id == minion_id)),
            Minion.id),
        **_standing_columns(minion_id),
        **_history_columns(minion_id, start),
        "lineage": _lineage_rows(minion_id),
        "jobs": _job_rows(minion_id, viewer_id, page, per_page),
    }
    row = db.session.execute(select(*(column.label(name) for name, column in columns.items()))).one()._mapping
    minions = rows_of(row["minion"])
    if not minions:
        return None
    minion = MinionProfile.from_row(minions[0])
    return MinionPage(
        minion=minion,
        standing=MinionStanding(*(None if row[f"{window}_score"] is None else
                                  Place.of(row[f"{window}_above"], row[f"{window}_tied_before"])
                                  for window in STANDING_WINDOWS)),
        history=_xp_days(rows_of(row["history"]), row["xp_before"], start, days),
        lineage=[LineageVersion.from_row(version) for version in rows_of(row["lineage"])],
        jobs=page_of([JobLine.from_row(job) for job in rows_of(row["jobs"])], page, per_page)
        if minion.owner_user_id == viewer_id else None,
    )


def _standing_columns(minion_id: int) -> dict[str, Any]:
    """Per window, the minion's score on the board (NULL when it is not on it: archived, or no XP in the
    window), how many score more, and how many score the same with a smaller id."""
    columns = {}
    for window in STANDING_WINDOWS:
        filters = BoardFilters(window=window)
        key, score = board_columns(window)
        value = scoped(select(score), filters).where(key == minion_id).scalar_subquery()
        columns |= {f"{window}_score": value, f"{window}_above": scoring_above(filters, value),
                    f"{window}_tied_before": tied_before(filters, minion_id, value)}
    return columns


def _history_columns(minion_id: int, start: datetime) -> dict[str, Any]:
    """The XP gained on each UTC day since ``start`` (JSON rows), and the XP gained before it."""
    day = utc_day(MinionXpEvent.created_at)
    of_minion = MinionXpEvent.minion_id == minion_id
    return {
        "history": json_rows(select(day.label("day"), func.sum(MinionXpEvent.delta).label("gained"))
                             .where(of_minion, MinionXpEvent.created_at >= start).group_by(day), day),
        "xp_before": select(func.coalesce(func.sum(MinionXpEvent.delta), 0))
        .where(of_minion, MinionXpEvent.created_at < start).scalar_subquery(),
    }


def _xp_days(gains: list[dict[str, Any]], before: int, start: datetime, days: int) -> list[XpDay]:
    """Each of ``days`` days from ``start`` with the XP gained that day and the running total."""
    gained = {gain["day"]: int(gain["gained"]) for gain in gains}
    history, total = [], int(before)
    for offset in range(days):
        day = start + timedelta(days=offset)
        total += gained.get(day.date().isoformat(), 0)
        history.append(XpDay(day, gained.get(day.date().isoformat(), 0), total))
    return history


def _lineage_rows(minion_id: int, limit: int = 20) -> ScalarSelect:
    """The minion's model version and its parents, newest first, each with its model and the job that
    produced it (JSON rows; none when the minion runs on the base model)."""
    current = select(Minion.model_version_id).where(Minion.id == minion_id).scalar_subquery()
    chain = select(ModelVersion.id, ModelVersion.parent_version_id, literal(0).label("depth")).where(
        ModelVersion.id == current).cte("lineage", recursive=True)
    chain = chain.union_all(
        select(ModelVersion.id, ModelVersion.parent_version_id, chain.c.depth + 1)
        .join(chain, ModelVersion.id == chain.c.parent_version_id).where(chain.c.depth < limit - 1)
    )
    return json_rows(
        select(AIModel.name.label("model_name"), ModelVersion.version, ModelVersion.stage,
               TrainingJob.id.label("training_job_id"), TrainingJob.name.label("training_job_name"),
               utc_day(ModelVersion.created_at).label("created_on"))
        .join(chain, chain.c.id == ModelVersion.id).join(AIModel, AIModel.id == ModelVersion.model_id)
        .outerjoin(TrainingJob, TrainingJob.id == ModelVersion.training_job_id),
        chain.c.depth,
    )


def _job_rows(minion_id: int, viewer_id: int, page: int, per_page: int) -> ScalarSelect:
    """A page of the minion's jobs, newest first, when ``viewer_id`` owns it (JSON rows, one more than the page)."""
    return json_rows(
        page_slice(select(TrainingJob.id, TrainingJob.name, TrainingJob.status,
                          utc_day(TrainingJob.queued_at).label("queued_on"))
                   .join(Minion, Minion.id == TrainingJob.minion_id)
                   .where(Minion.id == minion_id, Minion.owner_user_id == viewer_id), page, per_page),
        TrainingJob.queued_at.desc(), TrainingJob.id.desc(),
    )
