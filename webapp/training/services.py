"""Training jobs: the one status state machine, scoped look-ups, the list, actions and runner reports."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload, selectinload

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.minions.services import JOB_SUCCESS_REASON, JOB_SUCCESS_XP, award_xp
from webapp.providers.models import ModelVersion
from webapp.security import hash_token, new_token
from webapp.training.models import (
    ACTIVE_JOB_STATUSES, EVENT_LEVELS, JOB_STATUSES, JOB_TYPES, JobRunner, TrainingJob,
    TrainingJobDataset, TrainingJobEvent, TrainingJobStatusCount,
)

# The job state machine: every status change goes through ``transition``.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "canceled", "failed"}),
    "running": frozenset({"succeeded", "failed", "canceled"}),
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
MAX_CHART_POINTS = 500
EVENT_LOG_LIMIT = 200


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


# --- detail: events and the metrics chart ---------------------------------------------------


def job_events(job: TrainingJob, after_id: int = 0, limit: int = EVENT_LOG_LIMIT) -> list[TrainingJobEvent]:
    """The job's events newer than ``after_id``, newest first."""
    return list(db.session.scalars(
        select(TrainingJobEvent)
        .where(TrainingJobEvent.training_job_id == job.id, TrainingJobEvent.id > after_id)
        .order_by(TrainingJobEvent.id.desc()).limit(limit)
    ))


@dataclass
class MetricSeries:
    """One metric's own small chart: its line (or single point) and the labels of its own axis."""

    name: str
    points: list[tuple[float, float]]  # SVG coordinates, one per report of this metric
    last: float
    low: float
    high: float
    reports: int

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass
class MetricChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    series: list[MetricSeries]
    samples: int


# Each metric gets a small chart of this size; the left margin holds its axis labels.
CHART_WIDTH, CHART_HEIGHT = 320, 150
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 64, 308, 12, 122


def metric_chart(job: TrainingJob) -> MetricChart:
    """One small chart per numeric metric in the job's reports, each scaled to its own labelled axis."""
    rows = db.session.scalars(
        select(TrainingJobEvent.metrics)
        .where(TrainingJobEvent.training_job_id == job.id)
        .order_by(TrainingJobEvent.id.desc()).limit(MAX_CHART_POINTS)
    ).all()
    samples = [metrics for metrics in reversed(rows) if metrics]
    names = sorted({name for sample in samples for name, value in sample.items()
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "step"})
    series = []
    for name in names:
        values = [(index, sample[name]) for index, sample in enumerate(samples)
                  if isinstance(sample.get(name), (int, float))]
        low, high = min(v for _, v in values), max(v for _, v in values)
        span, steps = (high - low) or 1, max(len(samples) - 1, 1)
        points = [
            (PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * (index / steps if len(values) > 1 else 0.5),
             PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * ((value - low) / span if high > low else 0.5))
            for index, value in values
        ]
        series.append(MetricSeries(name, points, values[-1][1], low, high, len(values)))
    return MetricChart(CHART_WIDTH, CHART_HEIGHT, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM, series, len(samples))


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
    return previous


def cancel_job(job: TrainingJob, actor: User) -> None:
    """Cancel a queued or running job, logged in its events and audited."""
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
    now = utcnow()
    retry = TrainingJob(
        user_id=job.user_id, minion_id=job.minion_id, base_model_id=job.base_model_id,
        job_type=job.job_type, provider_id=job.provider_id, name=retried_name(job.name),
        hyperparameters=dict(job.hyperparameters), status="queued", progress=0.0,
        queued_at=now, retry_of_id=job.id,
        datasets=[TrainingJobDataset(dataset_id=link.dataset_id, split=link.split) for link in job.datasets],
    )
    db.session.add(retry)
    job.updated_at = now
    db.session.flush()
    db.session.add(TrainingJobEvent(training_job_id=retry.id, message=f"Queued as a retry of job #{job.id}"))
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
class Report:
    """A runner's report, validated before anything is changed."""

    status: str | None
    progress: float | None
    metrics: dict[str, float]
    events: list[dict[str, Any]]
    error: str | None
    output_version: dict[str, Any]


def parse_report(body: Any) -> Report:
    """Check the JSON body field by field; InvalidReport names the first problem."""
    if not isinstance(body, dict):
        raise InvalidReport("The body must be a JSON object.")
    unknown = set(body) - {"status", "progress", "metrics", "events", "error", "output_model_version"}
    if unknown:
        raise InvalidReport(f"Unknown fields: {', '.join(sorted(unknown))}.")
    status = body.get("status")
    if status is not None and status not in JOB_STATUSES:
        raise InvalidReport(f"status must be one of {', '.join(JOB_STATUSES)}.")
    events = body.get("events", [])
    if not isinstance(events, list):
        raise InvalidReport("events must be a list.")
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        raise InvalidReport("error must be a string.")
    output_version = body.get("output_model_version") or {}
    if not isinstance(output_version, dict) or not isinstance(output_version.get("version", ""), str) \
            or not isinstance(output_version.get("artifact_uri", ""), str):
        raise InvalidReport("output_model_version must be an object with string version and artifact_uri.")
    return Report(
        status=status,
        progress=checked_progress(body.get("progress"), "progress"),
        metrics=checked_metrics(body.get("metrics"), "metrics"),
        events=[checked_event(event, index) for index, event in enumerate(events)],
        error=error,
        output_version={**output_version, "metrics": checked_metrics(output_version.get("metrics"), "output metrics")},
    )


def checked_progress(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidReport(f"{field} must be a number from 0 to 1.")
    return float(value)


def checked_metrics(value: Any, field: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise InvalidReport(f"{field} must be an object of numbers.")
    return dict(value)


def checked_event(event: Any, index: int) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("message"), str) or not event["message"].strip():
        raise InvalidReport(f"events[{index}] needs a non-empty message.")
    level = event.get("level", "info")
    if level not in EVENT_LEVELS:
        raise InvalidReport(f"events[{index}].level must be one of {', '.join(EVENT_LEVELS)}.")
    return {
        "level": level,
        "message": event["message"].strip(),
        "progress": checked_progress(event.get("progress"), f"events[{index}].progress"),
        "metrics": checked_metrics(event.get("metrics"), f"events[{index}].metrics"),
    }


def apply_report(job: TrainingJob, runner: JobRunner, report: Report) -> str | None:
    """Apply a validated report to ``job``; return a note when it repeated a finished job's status.

    Raises JobError (nothing applied) when the report asks for an illegal transition.
    """
    runner.last_seen_at = utcnow()
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
        job.metrics = {**job.metrics, **report.metrics}
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
