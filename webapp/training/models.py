"""Training jobs (internal and external in one table), their datasets, log and runners."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, Index, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.datasets.models import Dataset
from webapp.db import TimestampMixin, choice_check, fk, non_negative, trigram_index
from webapp.extensions import db

JOB_TYPES = ("internal", "external")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
ACTIVE_JOB_STATUSES = ("queued", "running")
SPLITS = ("train", "validation", "test")
EVENT_LEVELS = ("debug", "info", "warning", "error")


class TrainingJob(TimestampMixin, db.Model):
    """Internal and external training jobs in one table (review item 6)."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        choice_check("job_type", JOB_TYPES),
        choice_check("status", JOB_STATUSES),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        CheckConstraint(
            "job_type != 'external' OR provider_id IS NOT NULL", name="external_has_provider"
        ),
        Index("ix_training_jobs_status_created_at", "status", "created_at"),
        Index("ix_training_jobs_user_id_created_at", "user_id", "created_at"),
        # The admin list's default order (latest queued first, id breaking ties).
        Index("ix_training_jobs_queued_at_id", "queued_at", "id"),
        # The staff list (every user's jobs, newest or oldest first) reads one page of it.
        Index("ix_training_jobs_created_at_id", "created_at", "id"),
        # The staff summary's "finished in the last 24 hours" reads only that day.
        Index("ix_training_jobs_finished_at", "finished_at"),
        # The sweeper: queued jobs nobody claimed since their dispatch, running jobs whose worker went quiet.
        Index("ix_training_jobs_status_dispatched_at", "status", "dispatched_at"),
        Index("ix_training_jobs_status_heartbeat_at", "status", "heartbeat_at"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts_range"),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"))
    minion_id: Mapped[int | None] = mapped_column(fk("minions.id", "SET NULL"), index=True)
    base_model_id: Mapped[int] = mapped_column(fk("models.id", "RESTRICT"), index=True)
    output_model_version_id: Mapped[int | None] = mapped_column(
        fk("model_versions.id", "SET NULL"), index=True
    )
    job_type: Mapped[str] = mapped_column(String(16), default="internal", server_default="internal")
    provider_id: Mapped[int | None] = mapped_column(fk("providers.id", "RESTRICT"), index=True)
    external_job_id: Mapped[str | None] = mapped_column(String(120))
    # The newest provider event already mirrored into the event log, so a poll (or a worker taking
    # the job over) mirrors only what is newer.
    external_events_cursor: Mapped[str | None] = mapped_column(String(120))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    retry_of_id: Mapped[int | None] = mapped_column(fk("training_jobs.id", "SET NULL"), index=True)
    # The lease: who runs the job (a Celery worker's host name, or "runner:<name>"), when it was last
    # heard from, how often it was claimed, and how many claims a lost worker may cost before it fails.
    worker_name: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(default=2, server_default="2")

    user = relationship("User", foreign_keys=[user_id])
    minion = relationship("Minion", foreign_keys=[minion_id])
    base_model = relationship("AIModel", foreign_keys=[base_model_id])
    output_model_version = relationship("ModelVersion", foreign_keys=[output_model_version_id])
    provider = relationship("Provider", foreign_keys=[provider_id])
    retry_of: Mapped[TrainingJob | None] = relationship(remote_side="TrainingJob.id")
    datasets: Mapped[list[TrainingJobDataset]] = relationship(
        back_populates="training_job", cascade="all, delete-orphan"
    )

    def __str__(self) -> str:
        return f"#{self.id} {self.name}"


trigram_index(TrainingJob.name)
trigram_index(TrainingJob.external_job_id)


class TrainingJobStatusCount(TimestampMixin, db.Model):
    """How many training jobs have each status, for the staff summary.

    Kept by database triggers on training_jobs (migration 0001), so every way a
    job is written, moved or deleted (the ORM, bulk loads, cascades) counts, and
    reading the counts costs the same however many jobs there are.
    """

    __tablename__ = "training_job_status_counts"
    __table_args__ = (choice_check("status", JOB_STATUSES),)

    status: Mapped[str] = mapped_column(String(16), unique=True)
    count: Mapped[int] = mapped_column(default=0, server_default="0")


class TrainingJobDataset(TimestampMixin, db.Model):
    __tablename__ = "training_job_datasets"
    __table_args__ = (
        choice_check("split", SPLITS),
        db.UniqueConstraint("training_job_id", "dataset_id", "split"),
    )

    training_job_id: Mapped[int] = mapped_column(fk("training_jobs.id", "CASCADE"), index=True)
    # NULL once the dataset is deleted: the job's history keeps its split, the file is gone.
    dataset_id: Mapped[int | None] = mapped_column(fk("datasets.id", "SET NULL"), index=True)
    split: Mapped[str] = mapped_column(String(16), default="train", server_default="train")

    training_job: Mapped[TrainingJob] = relationship(back_populates="datasets")
    dataset: Mapped[Dataset | None] = relationship()


class TrainingJobEvent(TimestampMixin, db.Model):
    """The job's log and metric stream."""

    __tablename__ = "training_job_events"
    __table_args__ = (
        choice_check("level", EVENT_LEVELS),
        CheckConstraint("progress IS NULL OR (progress >= 0 AND progress <= 1)", name="progress_range"),
        Index("ix_training_job_events_training_job_id_id", "training_job_id", "id"),
    )

    training_job_id: Mapped[int] = mapped_column(fk("training_jobs.id", "CASCADE"))
    level: Mapped[str] = mapped_column(String(8), default="info", server_default="info")
    message: Mapped[str] = mapped_column(Text)
    progress: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)

    training_job: Mapped[TrainingJob] = relationship()


class JobRunner(TimestampMixin, db.Model):
    """Whatever executes jobs; it reports through the JSON API with its own token."""

    __tablename__ = "job_runners"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_seen_at: Mapped[datetime | None]

    def __str__(self) -> str:
        return self.name


class JobRunnerReport(TimestampMixin, db.Model):
    """A report applied under its idempotency key, so a runner's retry is recognised and answered alike.

    Written in the report's own transaction: the unique key makes a concurrent retry fail
    to commit instead of applying the report twice.
    """

    __tablename__ = "job_runner_reports"
    __table_args__ = (db.UniqueConstraint("runner_id", "report_id"),)

    runner_id: Mapped[int] = mapped_column(fk("job_runners.id", "CASCADE"))
    report_id: Mapped[str] = mapped_column(String(64))
    training_job_id: Mapped[int] = mapped_column(fk("training_jobs.id", "CASCADE"), index=True)
    # The 200 answer's body, replayed to a retry.
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)

    runner = relationship("JobRunner")
    training_job = relationship("TrainingJob")

    def __str__(self) -> str:
        return f"{self.report_id} (job #{self.training_job_id})"
class TrainingWorker(TimestampMixin, db.Model):
    """A Celery worker process as it last reported itself: the staff workers page reads these rows.

    Each worker writes its own row (webapp.training.workers): on start, every heartbeat, after
    each task and on a clean stop. A worker that stopped without a word shows as stale.
    """

    __tablename__ = "training_workers"
    __table_args__ = (
        non_negative("processed"),
        non_negative("failed"),
        Index("ix_training_workers_heartbeat_at", "heartbeat_at"),
    )

    name: Mapped[str] = mapped_column(String(200), unique=True)  # Celery's node name, e.g. celery@host
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int | None]
    queues: Mapped[list[Any]] = mapped_column(default=list)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    processed: Mapped[int] = mapped_column(default=0, server_default="0")
    failed: Mapped[int] = mapped_column(default=0, server_default="0")

    def __str__(self) -> str:
        return self.name
