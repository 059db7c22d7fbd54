"""What the home page summarises, each in one query scoped to the user."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import joinedload

from webapp.accounts.models import User
from webapp.datasets.models import Dataset
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.providers.models import UserProviderConfig
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob

RUNNING_JOBS_SHOWN = 5


def running_jobs(user: User) -> list[TrainingJob]:
    return list(db.session.scalars(
        select(TrainingJob)
        .options(joinedload(TrainingJob.minion))
        .where(TrainingJob.user_id == user.id, TrainingJob.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(TrainingJob.queued_at.desc(), TrainingJob.id.desc())
        .limit(RUNNING_JOBS_SHOWN)
    ))


def best_minion(user: User) -> Minion | None:
    """The user's highest-XP minion that is not retired."""
    return db.session.scalars(
        select(Minion)
        .where(Minion.owner_user_id == user.id, Minion.status != "retired")
        .order_by(Minion.xp.desc(), Minion.id)
        .limit(1)
    ).first()


@dataclass(frozen=True)
class Step:
    label: str
    endpoint: str
    done: bool


def checklist(user: User) -> list[Step]:
    """The first steps on the platform, each ticked from the user's own rows (one query)."""
    has_key, has_minion, has_dataset, has_job = db.session.execute(select(
        exists().where(UserProviderConfig.user_id == user.id, UserProviderConfig.api_key_ciphertext.is_not(None)),
        exists().where(Minion.owner_user_id == user.id),
        exists().where(Dataset.owner_user_id == user.id),
        exists().where(TrainingJob.user_id == user.id),
    )).one()
    return [
        Step("Confirm your email address", "accounts.account", user.email_verified_at is not None),
        Step("Add a provider key", "providers.provider_list", bool(has_key)),
        Step("Create a minion", "minions.minion_list", bool(has_minion)),
        Step("Add a dataset", "datasets.dataset_upload", bool(has_dataset)),
        Step("Start training", "training.job_list", bool(has_job)),
    ]
