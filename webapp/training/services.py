"""Training jobs: the one status state machine, scoped look-ups, the list, actions and runner reports."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, select, update
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
    ACTIVE_JOB_STATUSES, EVENT_LEVELS, JOB_STATUSES, JOB_TYPES, JobRunner, JobRunnerReport, TrainingJob,
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
class MetricChart:
    width: int
    height: int
    series: list[dict[str, Any]]  # {"name", "points" (SVG polyline), "last", "low", "high"}
    samples: int


CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 600, 200, 12


def metric_chart(job: TrainingJob) -> MetricChart:
    """Each numeric metric reported in the job's events, scaled into its own polyline."""
    rows = db.session.scalars(
        select(TrainingJobEvent.metrics)
        .where(TrainingJobEvent.training_job_id == job.id)
        .order_by(TrainingJobEvent.id.desc()).limit(MAX_CHART_POINTS)
    ).all()
    samples = [metrics for metrics in reversed(rows) if metrics]
    names = sorted({name for sample in samples for name, value in sample.items()
                    if isinstance(value, (int, float)) and name != "step"})
    series = []
    for name in names:
        values = [(index, sample[name]) for index, sample in enumerate(samples)
                  if isinstance(sample.get(name), (int, float))]
        low, high = min(v for _, v in values), max(v for _, v in values)
        span, steps = (high - low) or 1, max(len(samples) - 1, 1)
        points = " ".join(
            f"{CHART_PAD + (CHART_WIDTH - 2 * CHART_PAD) * index / steps:.1f},"
            f"{CHART_HEIGHT - CHART_PAD - (CHART_HEIGHT - 2 * CHART_PAD) * (value - low) / span:.1f}"
            for index, value in values
        )
        series.append({"name": name, "points": points, "last": values[-1][1], "low": low, "high": high})
    return MetricChart(CHART_WIDTH, CHART_HEIGHT, series, len(samples))


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
    if any(link.dataset_id is None for link in job.datasets):
        raise JobError(f"A dataset job #{job.id} trained on has been deleted; start a new job instead.")
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


def column_length(column: Any) -> int:
    return column.property.columns[0].type.length


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
        job.progress = report.progress
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
