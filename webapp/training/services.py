"""Training jobs: the one status state machine, scoped look-ups, the list, actions and runner reports."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from flask import current_app
from sqlalchemy import Row, Select, bindparam, func, or_, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, aliased, joinedload, selectinload
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp import quotas
from webapp.datasets.models import Dataset
from webapp.db import utcnow
from webapp.extensions import db
from webapp.jsonapi import column_length
from webapp.mail import absolute_url, send_mail
# A module import: metering's services read quotas, which may be mid-import of this module when this runs.
from webapp.metering import services as metering
from webapp.minions.models import Minion
from webapp.minions.services import JOB_SUCCESS_REASON, JOB_SUCCESS_XP, award_xp
from webapp.providers.models import AIModel, ModelVersion, Provider, UserProviderConfig
from webapp.providers.openai_api import fine_tuning_refusal
from webapp.security import hash_token, new_token
from webapp.training.models import (
    ACTIVE_JOB_STATUSES, EVENT_LEVELS, JOB_STATUSES, JOB_TYPES, JobRunner, JobRunnerReport, TrainingJob,
    TrainingJobDataset, TrainingJobEvent, TrainingJobStatusCount,
)

# The job state machine: every status change goes through ``transition``.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "canceled", "failed"}),
    # running -> queued: a lost worker's job goes back to the queue for another attempt.
    "running": frozenset({"succeeded", "failed", "canceled", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
}
FINISHED_STATUSES = tuple(status for status, targets in TRANSITIONS.items() if not targets)
RETRYABLE_STATUSES = ("failed", "canceled")
SORTS = {
    "newest": (TrainingJob.created_at.desc(), TrainingJob.id.desc()),
    "oldest": (TrainingJob.created_at.asc(), TrainingJob.id.asc()),
    "name": (TrainingJob.name.asc(), TrainingJob.id.asc()),
    "progress": (TrainingJob.progress.desc(), TrainingJob.id.desc()),
}


class JobError(Exception):
    """A domain rule refused the request; ``status`` is the HTTP code to answer with."""

    status = 409


class IllegalTransition(JobError):
    def __init__(self, job: TrainingJob, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS[job.status])) or "nothing (it has finished)"
        super().__init__(f"Job #{job.id} is {job.status} and cannot become {target}; it can become {allowed}.")


class InvalidReport(JobError):
    status = 422


# --- look-ups scoped to the asking user ------------------------------------------------


def visible_jobs(user: User, permission: str = "jobs.read_all") -> Select:
    """Jobs ``user`` may see (``jobs.read_all``) or act on (``jobs.manage``): theirs, or all with the permission."""
    statement = select(TrainingJob)
    if not user.has_permission(permission):
        statement = statement.where(TrainingJob.user_id == user.id)
    return statement


def job_for(user: User, job_id: int, permission: str = "jobs.read_all") -> TrainingJob | None:
    """The job if ``user`` may see it (or act on it, with ``permission="jobs.manage"``), else None."""
    return db.session.scalars(
        visible_jobs(user, permission)
        .where(TrainingJob.id == job_id)
        .options(
            joinedload(TrainingJob.user), joinedload(TrainingJob.minion), joinedload(TrainingJob.base_model),
            joinedload(TrainingJob.provider), joinedload(TrainingJob.output_model_version),
            selectinload(TrainingJob.datasets).joinedload(TrainingJobDataset.dataset),
        )
    ).first()


# A job's retry, as job_state looks for it (made once: an alias of the whole table costs a proxy per column).
RETRY = aliased(TrainingJob, name="retry")


def job_state(user: User, job_id: int) -> Row | None:
    """What a job's live row and panel show, in one indexed query (None when ``user`` may not see it).

    The job's own columns (a write bumps updated_at and lock_version; the times are named as on
    the job, so the duration helpers read this row as they read a job), the related rows whose
    names it shows, its latest event (the log and the charts) and its retry.
    """
    statement = job_state_statement(user.has_permission("jobs.read_all"))
    return db.session.execute(statement, {"job_id": job_id, "viewer_id": user.id}).first()


@cache
def job_state_statement(sees_all: bool) -> Select:
    """job_state's statement, built once per kind of viewer: every poll runs it, and building it cost
    more than running it. Who sees which job is visible_jobs' rule."""
    statement = (
        select(
            TrainingJob.id, TrainingJob.updated_at, TrainingJob.lock_version, TrainingJob.status,
            TrainingJob.queued_at, TrainingJob.dispatched_at, TrainingJob.started_at, TrainingJob.finished_at,
            User.updated_at.label("owner"), Minion.updated_at.label("minion"), AIModel.updated_at.label("model"),
            Provider.updated_at.label("provider"), ModelVersion.updated_at.label("output"),
            select(func.max(TrainingJobEvent.id)).where(TrainingJobEvent.training_job_id == TrainingJob.id)
            .scalar_subquery().label("latest_event"),
            select(func.max(RETRY.id)).where(RETRY.retry_of_id == TrainingJob.id).scalar_subquery().label("retry"),
        )
        .join(User, User.id == TrainingJob.user_id).join(AIModel, AIModel.id == TrainingJob.base_model_id)
        .outerjoin(Minion, Minion.id == TrainingJob.minion_id).outerjoin(Provider, Provider.id == TrainingJob.provider_id)
        .outerjoin(ModelVersion, ModelVersion.id == TrainingJob.output_model_version_id)
        .where(TrainingJob.id == bindparam("job_id"))
    )
    return statement if sees_all else statement.where(TrainingJob.user_id == bindparam("viewer_id"))


# --- the list -----------------------------------------------------------------------------


@dataclass
class JobFilters:
    status: str | None = None
    job_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    owner_email: str | None = None
    sort: str = "newest"


def job_list_statement(user: User, filters: JobFilters) -> Select:
    """The filtered, sorted list of jobs ``user`` may see, with what each row shows loaded in one query."""
    statement = visible_jobs(user).options(
        joinedload(TrainingJob.user), joinedload(TrainingJob.minion),
        joinedload(TrainingJob.base_model), joinedload(TrainingJob.provider),
    )
    if filters.status in JOB_STATUSES:
        statement = statement.where(TrainingJob.status == filters.status)
    if filters.job_type in JOB_TYPES:
        statement = statement.where(TrainingJob.job_type == filters.job_type)
    if filters.since:
        statement = statement.where(TrainingJob.created_at >= filters.since)
    if filters.until:
        statement = statement.where(TrainingJob.created_at < filters.until)
    if filters.owner_email and user.has_permission("jobs.read_all"):
        owner_ids = select(User.id).where(func.lower(User.email) == filters.owner_email.strip().lower())
        statement = statement.where(TrainingJob.user_id.in_(owner_ids.scalar_subquery()))
    return statement.order_by(*SORTS.get(filters.sort, SORTS["newest"]))


@dataclass
class StaffSummary:
    counts: dict[str, int]
    failure_rate: float | None
    finished_last_day: int
    oldest_queued_at: datetime | None

    @property
    def oldest_queued_age(self) -> timedelta | None:
        return utcnow() - self.oldest_queued_at if self.oldest_queued_at else None


def staff_summary() -> StaffSummary:
    """Counts by status (kept by triggers), the last 24 hours' failure rate and the oldest queued job.

    Three queries that each read a bounded number of rows, however many jobs there are.
    """
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update(db.session.execute(
        select(TrainingJobStatusCount.status, TrainingJobStatusCount.count)
    ).all())
    since = utcnow() - timedelta(hours=24)
    finished = dict(db.session.execute(
        select(TrainingJob.status, func.count())
        .where(TrainingJob.status.in_(FINISHED_STATUSES), TrainingJob.finished_at >= since)
        .group_by(TrainingJob.status)
    ).all())
    total = sum(finished.values())
    oldest = db.session.scalar(
        select(TrainingJob.created_at).where(TrainingJob.status == "queued")
        .order_by(TrainingJob.created_at).limit(1)
    )
    return StaffSummary(
        counts=counts,
        failure_rate=finished.get("failed", 0) / total if total else None,
        finished_last_day=total,
        oldest_queued_at=oldest,
    )


# --- the state machine and the actions ------------------------------------------------------


def transition(job: TrainingJob, target: str, error_message: str | None = None) -> str:
    """Move ``job`` to ``target`` if the state machine allows it; return the previous status."""
    if target not in TRANSITIONS:
        raise InvalidReport(f"Unknown status {target!r}; use one of {', '.join(JOB_STATUSES)}.")
    if target not in TRANSITIONS[job.status]:
        raise IllegalTransition(job, target)
    previous, now = job.status, utcnow()
    job.status = target
    if target == "running":
        job.started_at = now
    if target in FINISHED_STATUSES:
        job.finished_at = now
    if target == "succeeded":
        job.progress = 1.0
    if target == "failed":
        job.error_message = error_message or "The runner reported a failure without a message."
    if target == "queued":
        job.worker_name, job.heartbeat_at, job.progress = None, None, 0.0
    if previous == "running" and target in FINISHED_STATUSES:
        record_training_minutes(job, now)
    return previous


def record_training_minutes(job: TrainingJob, now: datetime) -> None:
    """Meter the minutes the job ran (started, rounded up) against its owner's training_minutes, once per job."""
    minutes = math.ceil((now - job.started_at).total_seconds() / 60) if job.started_at else 0
    metering.record_usage([metering.UsageEvent(
        event_id=f"training-job-{job.id}", user_id=job.user_id, metric="training_minutes", quantity=max(minutes, 1),
        occurred_at=now, model=job.base_model_id)], now)


def cancel_job(job: TrainingJob, actor: User) -> None:
    """Cancel a queued or running job, logged in its events and audited.

    Takes the job's row lock and reads it again first: a worker reporting every step must not
    make the owner's cancel fail as a concurrent edit (its next report sees the cancel and stops).
    """
    lock_job(job.id)
    db.session.refresh(job)
    previous = transition(job, "canceled")
    db.session.add(TrainingJobEvent(
        training_job_id=job.id, level="warning", message=f"Canceled by {actor.display_name}", progress=job.progress,
    ))
    record("training_job.cancel", job, {"status": [previous, job.status]}, actor=actor)


def retry_job(job: TrainingJob, actor: User) -> tuple[TrainingJob, bool]:
    """A new queued job with the same inputs; (job, False) when ``job`` was already retried.

    Touching the original bumps its lock_version, so two concurrent retries of the
    same job cannot both commit: the second fails with StaleDataError.
    """
    if job.status not in RETRYABLE_STATUSES:
        raise JobError(f"Job #{job.id} is {job.status}; only failed or canceled jobs can be retried.")
    existing = db.session.scalars(select(TrainingJob).where(TrainingJob.retry_of_id == job.id).limit(1)).first()
    if existing is not None:
        return existing, False
    if any(link.dataset_id is None for link in job.datasets):
        raise JobError(f"A dataset job #{job.id} trained on has been deleted; start a new job instead.")
    now = utcnow()
    retry = TrainingJob(
        user_id=job.user_id, minion_id=job.minion_id, base_model_id=job.base_model_id,
        job_type=job.job_type, provider_id=job.provider_id, name=retried_name(job.name),
        hyperparameters=dict(job.hyperparameters), status="queued", progress=0.0,
        queued_at=now, retry_of_id=job.id, max_attempts=job.max_attempts,
        datasets=[TrainingJobDataset(dataset_id=link.dataset_id, split=link.split) for link in job.datasets],
    )
    db.session.add(retry)
    job.updated_at = now
    db.session.flush()
    db.session.add(TrainingJobEvent(training_job_id=retry.id, message=f"Queued as a retry of job #{job.id}"))
    dispatch(retry)
    record("training_job.retry", job, {"retry_id": retry.id}, actor=actor)
    return retry, True


def retried_name(name: str) -> str:
    return name if name.endswith("(retry)") else f"{name} (retry)"


# --- runners and their reports ----------------------------------------------------------


def create_runner(name: str) -> tuple[JobRunner, str]:
    """A runner and its token; only the token's hash is stored, so the token is shown once."""
    token = new_token()
    runner = JobRunner(name=name, token_hash=hash_token(token))
    db.session.add(runner)
    db.session.flush()
    record("job_runner.create", runner, {"name": name})
    return runner, token


def runner_for_token(token: str | None) -> JobRunner | None:
    if not token:
        return None
    return db.session.scalars(
        select(JobRunner).where(JobRunner.token_hash == hash_token(token), JobRunner.is_active.is_(True))
    ).first()


@dataclass
class ReportLimits:
    """How much one report may carry (configurable; see the README)."""

    events: int
    message_length: int
    metric_keys: int
    metric_key_length: int
    stored_metrics: int

    @classmethod
    def from_config(cls) -> ReportLimits:
        config = current_app.config
        return cls(events=config["RUNNER_MAX_EVENTS_PER_REPORT"],
                   message_length=config["RUNNER_MAX_EVENT_MESSAGE_LENGTH"],
                   metric_keys=config["RUNNER_MAX_METRIC_KEYS"],
                   metric_key_length=config["RUNNER_MAX_METRIC_KEY_LENGTH"],
                   stored_metrics=config["JOB_MAX_STORED_METRICS"])


class ReportTooLarge(InvalidReport):
    status = 413


@dataclass
class Report:
    """A runner's report, validated before anything is changed."""

    status: str | None
    progress: float | None
    metrics: dict[str, float]
    events: list[dict[str, Any]]
    error: str | None
    output_version: dict[str, Any]
    report_id: str | None = None


REPORT_FIELDS = {"status", "progress", "metrics", "events", "error", "output_model_version", "report_id"}


def checked_text(value: Any, field: str, max_length: int, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidReport(f"{field} must be a{' non-empty' if required else ''} string.")
    if len(value) > max_length:
        raise InvalidReport(f"{field} is {len(value)} characters long; at most {max_length} are allowed.")
    return value


def parse_report(body: Any, limits: ReportLimits) -> Report:
    """Check the JSON body field by field; InvalidReport names the first problem."""
    if not isinstance(body, dict):
        raise InvalidReport("The body must be a JSON object.")
    unknown = set(body) - REPORT_FIELDS
    if unknown:
        raise InvalidReport(f"Unknown fields: {', '.join(sorted(unknown))[:300]}.")
    status = body.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidReport(f"status must be one of {', '.join(JOB_STATUSES)}.")
    events = body.get("events", [])
    if not isinstance(events, list):
        raise InvalidReport("events must be a list.")
    if len(events) > limits.events:
        raise ReportTooLarge(f"events holds {len(events)} events; at most {limits.events} fit in one report.")
    error = checked_text(body.get("error"), "error", limits.message_length)
    output_version = body.get("output_model_version") or {}
    if not isinstance(output_version, dict):
        raise InvalidReport("output_model_version must be an object with string version and artifact_uri.")
    version = checked_text(output_version.get("version"), "output_model_version.version",
                           column_length(ModelVersion.version))
    artifact_uri = checked_text(output_version.get("artifact_uri"), "output_model_version.artifact_uri",
                                column_length(ModelVersion.artifact_uri))
    return Report(
        status=status,
        progress=checked_progress(body.get("progress"), "progress"),
        metrics=checked_metrics(body.get("metrics"), "metrics", limits),
        events=[checked_event(event, index, limits) for index, event in enumerate(events)],
        error=error,
        output_version={"version": version, "artifact_uri": artifact_uri,
                        "metrics": checked_metrics(output_version.get("metrics"), "output metrics", limits)},
        report_id=checked_text(body.get("report_id"), "report_id", column_length(JobRunnerReport.report_id),
                               required="report_id" in body),
    )


def checked_progress(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidReport(f"{field} must be a number from 0 to 1.")
    return float(value)


def checked_metrics(value: Any, field: str, limits: ReportLimits) -> dict[str, float]:
    """An object of at most ``limits.metric_keys`` finite numbers under short names."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value.values()
    ):
        raise InvalidReport(f"{field} must be an object of finite numbers.")
    if len(value) > limits.metric_keys:
        raise InvalidReport(f"{field} has {len(value)} names; at most {limits.metric_keys} are allowed.")
    long_name = next((name for name in value if len(name) > limits.metric_key_length), None)
    if long_name is not None:
        raise InvalidReport(f"{field} has a name of {len(long_name)} characters; "
                            f"at most {limits.metric_key_length} are allowed.")
    return dict(value)


def checked_event(event: Any, index: int, limits: ReportLimits) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidReport(f"events[{index}] must be an object with a message.")
    message = checked_text(event.get("message"), f"events[{index}].message", limits.message_length, required=True)
    level = event.get("level", "info")
    if level not in EVENT_LEVELS:
        raise InvalidReport(f"events[{index}].level must be one of {', '.join(EVENT_LEVELS)}.")
    return {
        "level": level,
        "message": message.strip(),
        "progress": checked_progress(event.get("progress"), f"events[{index}].progress"),
        "metrics": checked_metrics(event.get("metrics"), f"events[{index}].metrics", limits),
    }


def applied_report(runner_id: int, report_id: str | None) -> JobRunnerReport | None:
    """The earlier application of this idempotency key by the runner, if any."""
    if report_id is None:
        return None
    return db.session.scalars(
        select(JobRunnerReport).where(JobRunnerReport.runner_id == runner_id, JobRunnerReport.report_id == report_id)
    ).first()


def mark_seen(runner: JobRunner) -> None:
    """Bookkeeping outside the optimistic lock: parallel reports of one runner never conflict over it."""
    db.session.execute(
        update(JobRunner.__table__).where(JobRunner.__table__.c.id == runner.id).values(last_seen_at=utcnow())
    )


def report_answer(job: TrainingJob, note: str | None) -> dict[str, Any]:
    body = {"job": job.id, "status": job.status, "progress": job.progress,
            "output_model_version_id": job.output_model_version_id}
    if note:
        body["note"] = note
    return body


def receive_report(job: TrainingJob, runner: JobRunner, report: Report, limits: ReportLimits) -> dict[str, Any]:
    """Apply ``report`` once per idempotency key and return the answer's body, built before the commit.

    A key seen before answers what its first application answered; the caller commits.
    """
    earlier = applied_report(runner.id, report.report_id)
    if earlier is not None:
        if earlier.training_job_id != job.id:
            raise InvalidReport(f"report_id {report.report_id!r} was already used for job #{earlier.training_job_id}.")
        return earlier.response
    note = apply_report(job, runner, report, limits)
    db.session.flush()
    answer = report_answer(job, note)
    if report.report_id is not None:
        db.session.add(JobRunnerReport(runner_id=runner.id, report_id=report.report_id, training_job_id=job.id,
                                       response=answer))
    return answer


def apply_report(job: TrainingJob, runner: JobRunner, report: Report, limits: ReportLimits) -> str | None:
    """Apply a validated report to ``job``; return a note when it repeated a finished job's status.

    Raises JobError (nothing applied) when the report asks for an illegal transition.
    """
    mark_seen(runner)
    if job.status in FINISHED_STATUSES:
        if report.status == job.status:
            return f"Job #{job.id} is already {job.status}; nothing changed."
        raise IllegalTransition(job, report.status or "updated")
    previous = job.status
    if report.status and report.status != job.status:
        transition(job, report.status, report.error)
    if report.progress is not None and job.status != "succeeded":
        # A failure report often says 0 (or nothing useful): a failed job keeps the progress it reached.
        job.progress = max(job.progress, report.progress) if job.status == "failed" else report.progress
    if report.metrics:
        merged = {**job.metrics, **report.metrics}
        if len(merged) > limits.stored_metrics:
            raise ReportTooLarge(f"The job would keep {len(merged)} metrics; at most {limits.stored_metrics} are kept.")
        job.metrics = merged
    for event in report.events:
        db.session.add(TrainingJobEvent(training_job_id=job.id, **event))
    if job.status == "succeeded":
        complete_job(job, report)
    if job.status != previous:
        record("training_job.report", job, {"status": [previous, job.status], "runner": runner.name})
    return None


def complete_job(job: TrainingJob, report: Report) -> None:
    """Register the output model version (lineage from the minion's version) and award the minion XP."""
    minion = db.session.get(Minion, job.minion_id) if job.minion_id else None
    model_id = minion.model_id if minion else job.base_model_id
    version_name = report.output_version.get("version") or f"job-{job.id}"
    if db.session.scalar(select(ModelVersion.id).filter_by(model_id=model_id, version=version_name)):
        raise InvalidReport(f"Model version {version_name!r} already exists for this model.")
    version = ModelVersion(
        model_id=model_id, version=version_name, training_job_id=job.id,
        parent_version_id=minion.model_version_id if minion else None,
        artifact_uri=report.output_version.get("artifact_uri"),
        external_model_id=report.output_version.get("external_model_id"),
        metrics=report.output_version["metrics"] or dict(job.metrics), created_by_id=job.user_id,
    )
    db.session.add(version)
    db.session.flush()
    job.output_model_version_id = version.id
    if minion:
        minion.model_version_id = version.id
        award_xp(minion, JOB_SUCCESS_XP, JOB_SUCCESS_REASON, job)


def is_active(job: TrainingJob) -> bool:
    return job.status in ACTIVE_JOB_STATUSES


# --- the engine: dispatch, claim, lease, progress, finish, sweep ------------------------------
#
# A job row is committed first and dispatched after the commit (``dispatch`` only notes the id;
# the session's after_commit hook sends it). Whoever claims a queued job first runs it: the claim
# is one conditional UPDATE, so a job dispatched twice, or claimed by a worker and a runner at
# once, runs once. The claimer then heartbeats; the sweeper queues again, or fails, a job whose
# claimer went quiet, and dispatches again a queued job nobody claimed.

RUN_TASK = "webapp.training.tasks.run_training_job"
# A write that lost a race with another writer of the job is read and tried again this often.
WRITE_ATTEMPTS = 3
PENDING_DISPATCH = "training_jobs_to_dispatch"
log = logging.getLogger(__name__)


def dispatch(job: TrainingJob) -> None:
    """Send ``job`` to the workers once the current transaction commits (never before: a worker must find it)."""
    job.dispatched_at = utcnow()
    db.session.info.setdefault(PENDING_DISPATCH, set()).add(job.id)


@sa_event.listens_for(Session, "after_commit")
def _send_dispatched(session: Session) -> None:
    job_ids = session.info.pop(PENDING_DISPATCH, set())
    if not job_ids:
        return
    celery = current_app.extensions["celery"]
    for job_id in sorted(job_ids):
        try:
            celery.send_task(RUN_TASK, args=[job_id], retry=False)
        except Exception:  # the broker is down: the job stays queued and the sweeper dispatches it again
            log.warning("could not dispatch job %s; the sweeper will try again", job_id, exc_info=True)


@sa_event.listens_for(Session, "after_rollback")
def _forget_dispatched(session: Session) -> None:
    session.info.pop(PENDING_DISPATCH, None)


def claim_job(job_id: int, worker_name: str) -> int | None:
    """Claim queued job ``job_id`` for ``worker_name``; its attempt number, or None when it is not queued."""
    claimed = claim(TrainingJob.__table__.c.id == job_id, worker_name)
    return claimed[1] if claimed else None


def claim_next_job(job_types: list[str], worker_name: str) -> TrainingJob | None:
    """The oldest queued job of one of ``job_types``, claimed for ``worker_name``; None when there is none."""
    jobs = TrainingJob.__table__.c
    oldest = (select(jobs.id).where(jobs.status == "queued", jobs.job_type.in_(job_types))
              .order_by(jobs.queued_at, jobs.id).limit(1))
    if db.session.get_bind().dialect.name == "postgresql":
        # Claimers skip the row another claimer holds instead of queueing behind it.
        oldest = oldest.with_for_update(skip_locked=True)
    claimed = claim(jobs.id == oldest.scalar_subquery(), worker_name)
    return db.session.get(TrainingJob, claimed[0], populate_existing=True) if claimed else None


def claim(which, worker_name: str) -> tuple[int, int] | None:
    """The state machine's queued -> running, as one conditional UPDATE: of two claimers exactly one wins.

    Returns (job id, attempt) of the claimed job, or None. lock_version moves too, so an edit
    read before the claim fails instead of overwriting it. One statement also means SQLite
    takes its write lock before reading, so concurrent claimers wait instead of failing.
    """
    now = utcnow()
    jobs = TrainingJob.__table__.c
    row = db.session.execute(
        update(TrainingJob.__table__)
        .where(which, jobs.status == "queued")
        .values(status="running", started_at=now, worker_name=worker_name, heartbeat_at=now,
                attempts=jobs.attempts + 1, lock_version=jobs.lock_version + 1, updated_at=now)
        .returning(jobs.id, jobs.attempts, jobs.max_attempts)
    ).first()
    if row is None:
        return None
    job_id, attempts, max_attempts = row
    db.session.add(TrainingJobEvent(training_job_id=job_id, progress=0.0,
                                    message=f"Started on {worker_name} (attempt {attempts} of {max_attempts})"))
    return job_id, attempts


def runner_worker_name(runner: JobRunner) -> str:
    return f"runner:{runner.name}"


def parse_capabilities(body: Any) -> list[str]:
    """The job types a claiming runner can run: ``{"capabilities": ["internal", "external"]}``."""
    if not isinstance(body, dict) or set(body) - {"capabilities"}:
        raise InvalidReport('The body must be {"capabilities": [job types]}.')
    capabilities = body.get("capabilities")
    if not isinstance(capabilities, list) or not capabilities or not all(c in JOB_TYPES for c in capabilities):
        raise InvalidReport(f"capabilities must be a non-empty list of {', '.join(JOB_TYPES)}.")
    return list(dict.fromkeys(capabilities))


def job_assignment(job: TrainingJob) -> dict[str, Any]:
    """What a runner needs to run a job it claimed: inputs, hyperparameters and its lease's clock."""
    config = current_app.config
    return {
        "job": job.id, "name": job.name, "job_type": job.job_type, "status": job.status, "attempt": job.attempts,
        "base_model": {"id": job.base_model.id, "key": job.base_model.model_key, "type": job.base_model.model_type},
        "provider": job.provider.slug if job.provider else None,
        "hyperparameters": job.hyperparameters,
        "datasets": [{"dataset": link.dataset_id, "split": link.split, "format": link.dataset.format,
                      "uri": link.dataset.uri} for link in job.datasets],
        "heartbeat_seconds": config["JOB_HEARTBEAT_SECONDS"], "lease_seconds": config["JOB_LEASE_SECONDS"],
    }


def job_type_of(job_id: int) -> str:
    return db.session.scalar(select(TrainingJob.job_type).where(TrainingJob.id == job_id))


def heartbeat(job_id: int, worker_name: str, attempt: int) -> bool:
    """Note that ``worker_name`` still runs the job; False when the job is no longer its own.

    No lock_version bump: a heartbeat must never make a cancel in the console fail.
    """
    jobs = TrainingJob.__table__.c
    return bool(db.session.execute(
        update(TrainingJob.__table__)
        .where(jobs.id == job_id, jobs.status == "running", jobs.worker_name == worker_name,
               jobs.attempts == attempt)
        .values(heartbeat_at=utcnow())
    ).rowcount)


def lock_job(job_id: int) -> None:
    """Hold the job's row until this transaction ends, before reading it: writers of one job queue up.

    On SQLite the no-op update takes the database's write lock first, so a write after the read
    cannot fail because another process (a heartbeat, the sweeper) committed in between.
    """
    db.session.execute(text("UPDATE training_jobs SET id = id WHERE id = :id"), {"id": job_id})


def lease_state(job_id: int, worker_name: str, attempt: int) -> str | None:
    """The job's status when ``worker_name`` still holds this attempt of it, else None."""
    return db.session.scalar(
        select(TrainingJob.status).where(TrainingJob.id == job_id, TrainingJob.worker_name == worker_name,
                                         TrainingJob.attempts == attempt))


def record_progress(job: TrainingJob, *, progress: float | None, message: str | None, level: str,
                    metrics: dict[str, float]) -> None:
    """A running job's progress, metrics and log line, as a runner's report records them."""
    if job.status != "running":
        raise IllegalTransition(job, "updated")
    if progress is not None:
        job.progress = min(max(progress, 0.0), 1.0)
    if metrics:
        job.metrics = {**job.metrics, **metrics}
    if message or metrics:
        db.session.add(TrainingJobEvent(training_job_id=job.id, level=level, message=message or "Metrics",
                                        progress=job.progress, metrics=metrics))


def finish_held_job(ctx, status: str, error: str | None = None, outcome=None) -> str:
    """End the job ``ctx`` holds as ``status`` (succeeded with ``outcome``, failed with ``error``, canceled); commit.

    Nothing is written when the job is no longer this worker's (the sweeper moved it on).
    The owner gets a mail when it succeeded or failed.
    """
    db.session.commit()  # end what the trainer read or wrote, so the job's lock comes first below
    for attempt in range(WRITE_ATTEMPTS):
        try:
            lock_job(ctx.job_id)
            job = db.session.get(TrainingJob, ctx.job_id, populate_existing=True)
            if job is None or job.worker_name != ctx.worker_name or job.attempts != ctx.attempt:
                db.session.rollback()
                return "lease lost before the end"
            if status == "canceled" and job.status in ("running", "canceled"):
                if job.status == "running":
                    transition(job, "canceled")
                db.session.add(TrainingJobEvent(training_job_id=job.id, level="warning", progress=job.progress,
                                                message=f"Stopped on {ctx.worker_name} after the cancel"))
            elif job.status != "running":
                return f"already {job.status}"
            elif status == "failed":
                fail(job, error)
            else:
                succeed(job, outcome)
            db.session.commit()
        except (StaleDataError, OperationalError):
            # Written meanwhile (a cancel, the sweeper), or SQLite's write lock taken after this read.
            db.session.rollback()
            if attempt == WRITE_ATTEMPTS - 1:
                raise
            continue
        if job.status in ("succeeded", "failed"):
            notify_owner(job)
        return job.status


def succeed(job: TrainingJob, outcome) -> None:
    """running -> succeeded with the trainer's outcome: metrics, the new model version, the minion's XP."""
    transition(job, "succeeded")
    job.metrics = {**job.metrics, **outcome.metrics}
    complete_job(job, Report(
        status="succeeded", progress=1.0, metrics=outcome.metrics, events=[], error=None,
        output_version={"artifact_uri": outcome.artifact_uri, "external_model_id": outcome.external_model_id,
                        "metrics": dict(outcome.metrics)},
    ))
    summary = ", ".join(f"{name} {value:.4g}" for name, value in sorted(outcome.metrics.items()))
    db.session.add(TrainingJobEvent(training_job_id=job.id, progress=1.0, metrics={},
                                    message=f"Succeeded: version {job.output_model_version.version}"
                                            + (f" ({summary})" if summary else "")))


def fail(job: TrainingJob, error: str | None) -> None:
    transition(job, "failed", error)
    db.session.add(TrainingJobEvent(training_job_id=job.id, level="error", message=job.error_message,
                                    progress=job.progress))


def notify_owner(job: TrainingJob) -> None:
    """Mail the owner that ``job`` succeeded or failed, with a link to it; a mail problem is only logged."""
    try:
        send_mail(job.user.email, f"Training job #{job.id} {job.status}: {job.name}", "job_finished",
                  user=job.user, job=job, link=absolute_url("training.job_detail", job_id=job.id))
    except Exception:
        log.exception("could not mail the owner of job %s", job.id)


@dataclass
class SweepSummary:
    dispatched_again: int = 0
    queued_again: int = 0
    failed_lost: int = 0


def sweep(now: datetime | None = None) -> SweepSummary:
    """Dispatch again queued jobs nobody claimed in time; queue again or fail jobs whose worker went quiet.

    Reads the due jobs' ids, then changes and commits job by job, each under its row lock and checked
    again, so a job its worker wrote meanwhile is skipped, not the whole sweep.
    """
    config = current_app.config
    now = now or utcnow()
    summary = SweepSummary()
    unclaimed_since = now - timedelta(seconds=config["JOB_DISPATCH_TIMEOUT_SECONDS"])
    quiet_since = now - timedelta(seconds=config["JOB_LEASE_SECONDS"])
    unclaimed = db.session.scalars(
        select(TrainingJob.id).where(TrainingJob.status == "queued", or_(
            TrainingJob.dispatched_at.is_(None), TrainingJob.dispatched_at < unclaimed_since))
        .order_by(TrainingJob.id).limit(SWEEP_BATCH)).all()
    lost = db.session.scalars(
        select(TrainingJob.id).where(TrainingJob.status == "running", TrainingJob.heartbeat_at < quiet_since)
        .order_by(TrainingJob.id).limit(SWEEP_BATCH)).all()
    db.session.rollback()  # end the read: each change below starts with its job's lock
    for job_id in unclaimed:
        if change_job(job_id, lambda job: dispatch_again(job, unclaimed_since)):
            summary.dispatched_again += 1
    for job_id in lost:
        job = change_job(job_id, lambda job: release_lost(job, quiet_since))
        if job and job.status == "queued":
            summary.queued_again += 1
        elif job:
            summary.failed_lost += 1
            notify_owner(job)
    return summary


SWEEP_BATCH = 200


def change_job(job_id: int, change) -> TrainingJob | None:
    """Lock job ``job_id``, apply ``change`` (False: nothing to do) and commit; the job, or None when skipped."""
    try:
        lock_job(job_id)
        job = db.session.get(TrainingJob, job_id, populate_existing=True)
        if job is None or not change(job):
            db.session.rollback()
            return None
        db.session.commit()
        return job
    except (StaleDataError, OperationalError):
        db.session.rollback()
        return None


def dispatch_again(job: TrainingJob, unclaimed_since: datetime) -> bool:
    if job.status != "queued" or (job.dispatched_at is not None and job.dispatched_at >= unclaimed_since):
        return False
    if job.dispatched_at is not None:
        db.session.add(TrainingJobEvent(training_job_id=job.id, level="warning",
                                        message="No worker claimed the job in time; dispatched again"))
    dispatch(job)
    return True


def release_lost(job: TrainingJob, quiet_since: datetime) -> bool:
    """A running job whose worker stopped heartbeating: queued for another attempt, or failed as "worker lost"."""
    if job.status != "running" or job.heartbeat_at is None or job.heartbeat_at >= quiet_since:
        return False
    lost = (f"Worker lost: {job.worker_name or 'its worker'} stopped heartbeating "
            f"(last heard {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)")
    if job.attempts < job.max_attempts:
        transition(job, "queued")
        db.session.add(TrainingJobEvent(
            training_job_id=job.id, level="warning", progress=0.0,
            message=f"{lost}; queued again for attempt {job.attempts + 1} of {job.max_attempts}"))
        dispatch(job)
    else:
        fail(job, f"{lost}, after {job.attempts} of {job.max_attempts} attempts.")
    return True


# --- starting a job (/jobs/new) -----------------------------------------------------------------


def job_type_for(model: AIModel) -> str:
    """External models train at their provider; reference and custom models on the internal trainer."""
    return "external" if model.model_type == "external" else "internal"


def provider_key_for(user: User, model: AIModel) -> UserProviderConfig | None:
    """The user's enabled provider config with a stored key for ``model``'s provider (external models only)."""
    if job_type_for(model) != "external":
        return None
    return db.session.scalars(select(UserProviderConfig).where(
        UserProviderConfig.user_id == user.id, UserProviderConfig.provider_id == model.provider_id,
        UserProviderConfig.is_enabled.is_(True), UserProviderConfig.api_key_ciphertext.is_not(None))).first()


@dataclass
class NewJob:
    """A validated /jobs/new submission: the choices come from job_choices, the numbers are range-checked."""

    minion: Minion
    model: AIModel
    train: Dataset
    validation: Dataset | None
    hyperparameters: dict[str, float]
    name: str | None = None


def new_job(minion_id: int, model_id: int, train_id: int, validation_id: int | None,
            hyperparameters: dict[str, float], name: str | None) -> NewJob:
    """A submission of choices /jobs/new offered (by id), with their records loaded to start the job."""
    get = db.session.get
    return NewJob(minion=get(Minion, minion_id), model=get(AIModel, model_id, options=[joinedload(AIModel.provider)]),
                  train=get(Dataset, train_id), validation=get(Dataset, validation_id) if validation_id else None,
                  hyperparameters=hyperparameters, name=name)


def start_job(user: User, new: NewJob) -> TrainingJob:
    """Queue a job for ``user`` within their quotas (race-safe) and dispatch it once the caller commits.

    Raises JobError (403) for an unverified user or a missing provider key, QuotaExceeded past a limit.
    """
    if user.email_verified_at is None:
        raise VerificationRequired("Confirm your email address before starting a training job.")
    job_type = job_type_for(new.model)
    if job_type == "external" and (refusal := fine_tuning_refusal(new.model)):
        raise JobError(refusal)
    if job_type == "external" and provider_key_for(user, new.model) is None:
        raise JobError(f"Add your {new.model.provider.name} API key on the Providers page first.")
    for key in ("training_jobs", "concurrent_jobs", "training_minutes"):
        quotas.require(user, key)  # locks the user's row first: concurrent starts are counted one by one
    now = utcnow()
    job = TrainingJob(
        user_id=user.id, minion_id=new.minion.id, base_model_id=new.model.id, job_type=job_type,
        provider_id=new.model.provider_id if job_type == "external" else None,
        name=new.name or f"{new.minion.name} on {new.train.name}", status="queued", progress=0.0,
        hyperparameters=dict(new.hyperparameters), queued_at=now,
        max_attempts=current_app.config["JOB_MAX_ATTEMPTS"],
        datasets=[TrainingJobDataset(dataset_id=new.train.id, split="train")]
        + ([TrainingJobDataset(dataset_id=new.validation.id, split="validation")] if new.validation else []),
    )
    db.session.add(job)
    db.session.flush()
    db.session.add(TrainingJobEvent(training_job_id=job.id, message=f"Queued by {user.display_name}", progress=0.0))
    record("training_job.start", job, {"minion": new.minion.id, "model": new.model.id, "job_type": job_type},
           actor=user)
    dispatch(job)
    return job


class VerificationRequired(JobError):
    status = 403
