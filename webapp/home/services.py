"""What the home page summarises, each in one query scoped to the user."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from webapp.accounts.models import User
from webapp.extensions import db
from webapp.minions.models import Minion
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
