"""What the home page summarises besides the plan: all of it in one query scoped to the user."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select

from webapp.accounts.models import User
from webapp.billing import alerts
from webapp.billing.models import UserSubscription
from webapp.billing.services import meter_usage_columns
from webapp.datasets.models import Dataset
from webapp.db import json_rows, rows_of
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.providers.models import UserProviderConfig
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob

RUNNING_JOBS_SHOWN = 5


@dataclass(frozen=True)
class Step:
    label: str
    endpoint: str
    done: bool


@dataclass(frozen=True)
class Summary:
    """The home page's figures; jobs, the minion and alerts are rows (dicts) of the columns the page shows."""

    jobs: list[dict[str, Any]]
    minion: dict[str, Any] | None
    steps: list[Step]
    usage_alerts: list[dict[str, Any]]
    usage: dict[str, int]


def summary(user: User, subscription: UserSubscription | None) -> Summary:
    """The user's running jobs, best minion, first steps, usage alerts and (with a subscription) the meters' use."""
    usage = meter_usage_columns(user, subscription) if subscription else {}
    row = db.session.execute(select(
        running_jobs(user).label("jobs"), best_minion(user).label("minion"),
        json_rows(alerts.undismissed(user), *alerts.BANNER_ORDER).label("alerts"),
        *(column.label(name) for name, column in checklist_columns(user).items()),
        *(column.label(f"used_{key}") for key, column in usage.items()),
    )).one()._mapping
    minions = rows_of(row["minion"])
    return Summary(
        jobs=rows_of(row["jobs"]),
        minion=minions[0] if minions else None,
        steps=checklist(user, row),
        usage_alerts=alerts.highest_per_quota(rows_of(row["alerts"])),
        usage={key: int(row[f"used_{key}"] or 0) for key in usage},
    )


def running_jobs(user: User):
    """The user's newest active jobs (JSON rows)."""
    return json_rows(
        select(TrainingJob.id, TrainingJob.name, TrainingJob.status, TrainingJob.progress)
        .where(TrainingJob.user_id == user.id, TrainingJob.status.in_(ACTIVE_JOB_STATUSES))
        .limit(RUNNING_JOBS_SHOWN),
        TrainingJob.queued_at.desc(), TrainingJob.id.desc(),
    )


def best_minion(user: User):
    """The user's highest-XP minion that is not retired, the older on a tie (JSON rows, at most one)."""
    return json_rows(
        select(Minion.id, Minion.name, Minion.level, Minion.xp, Minion.status)
        .where(Minion.owner_user_id == user.id, Minion.status != "retired")
        .limit(1),
        Minion.xp.desc(), Minion.id,
    )


def checklist_columns(user: User) -> dict[str, Any]:
    return {
        "has_key": exists().where(UserProviderConfig.user_id == user.id,
                                  UserProviderConfig.api_key_ciphertext.is_not(None)),
        "has_minion": exists().where(Minion.owner_user_id == user.id),
        "has_dataset": exists().where(Dataset.owner_user_id == user.id),
        "has_job": exists().where(TrainingJob.user_id == user.id),
    }


def checklist(user: User, row: Any) -> list[Step]:
    """The first steps on the platform, each ticked from the user's own rows (``checklist_columns``)."""
    return [
        Step("Confirm your email address", "accounts.account", user.email_verified_at is not None),
        Step("Add a provider key", "providers.provider_list", bool(row["has_key"])),
        Step("Create a minion", "minions.minion_list", bool(row["has_minion"])),
        Step("Add a dataset", "datasets.dataset_upload", bool(row["has_dataset"])),
        Step("Start training", "training.job_list", bool(row["has_job"])),
    ]
