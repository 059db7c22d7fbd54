"""What the job page and the new-job form show, each read in one query of the columns they show.

Short lists come as JSON rows (``json_rows``) in the same round trip as the row they belong to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, null, select
from sqlalchemy.orm import aliased

from webapp.accounts.models import User
from webapp.datasets.models import Dataset
from webapp.db import json_rows, rows_of, timestamp_of
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.providers.models import AIModel, ModelVersion, Provider
from webapp.training.models import TrainingJob, TrainingJobDataset, TrainingJobEvent
from webapp.training.services import RETRY, visible_jobs

EVENT_LOG_LIMIT = 200
MAX_CHART_POINTS = 500


# --- the job page ------------------------------------------------------------------------------


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


def metric_chart(reports: list[dict[str, Any]]) -> MetricChart:
    """One small chart per numeric metric in the job's reports (oldest first), each scaled to its own labelled axis."""
    samples = [metrics for metrics in reports if metrics]
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


@dataclass
class JobPage:
    """A job as its page shows it.

    ``job`` holds the job's columns under their own names (so the duration helpers read it as they
    read a job) and the names of its related rows; ``events`` are the log lines after the page's
    cursor, newest first; ``datasets`` (full page only) its splits by name.
    """

    job: Row
    datasets: list[dict[str, Any]]
    events: list[dict[str, Any]]
    chart: MetricChart
    retried_as: int | None


# The model of a job's output version (made once: an alias of a whole table costs a proxy per column).
OUTPUT_MODEL = aliased(AIModel, name="output_model")


def job_page(user: User, job_id: int, after_id: int = 0, with_datasets: bool = True) -> JobPage | None:
    """Job ``job_id`` as its page shows it, in one query (None when ``user`` may not see it).

    The events are those after ``after_id`` (a poll's cursor); the chart reads the latest reports.
    """
    events = select(TrainingJobEvent.id, TrainingJobEvent.level, TrainingJobEvent.message, TrainingJobEvent.progress,
                    TrainingJobEvent.metrics, TrainingJobEvent.created_at) \
        .where(TrainingJobEvent.training_job_id == job_id, TrainingJobEvent.id > after_id).limit(EVENT_LOG_LIMIT)
    reports = select(TrainingJobEvent.metrics).where(TrainingJobEvent.training_job_id == job_id) \
        .limit(MAX_CHART_POINTS)
    datasets = select(TrainingJobDataset.split, TrainingJobDataset.dataset_id, Dataset.name, Dataset.row_count) \
        .outerjoin(Dataset, Dataset.id == TrainingJobDataset.dataset_id) \
        .where(TrainingJobDataset.training_job_id == job_id)
    links = json_rows(datasets, TrainingJobDataset.split, TrainingJobDataset.id) if with_datasets else null()
    row = db.session.execute(
        visible_jobs(user).with_only_columns(
            TrainingJob.id, TrainingJob.user_id, TrainingJob.name, TrainingJob.status, TrainingJob.progress,
            TrainingJob.job_type, TrainingJob.minion_id, TrainingJob.provider_id, TrainingJob.external_job_id,
            TrainingJob.hyperparameters, TrainingJob.error_message, TrainingJob.queued_at, TrainingJob.dispatched_at,
            TrainingJob.started_at, TrainingJob.finished_at, TrainingJob.retry_of_id, TrainingJob.worker_name,
            TrainingJob.heartbeat_at, TrainingJob.attempts, TrainingJob.max_attempts,
            TrainingJob.output_model_version_id,
            User.display_name.label("owner_name"), Minion.name.label("minion_name"),
            AIModel.name.label("base_model_name"), Provider.name.label("provider_name"),
            OUTPUT_MODEL.name.label("output_model_name"), ModelVersion.version.label("output_version"),
            ModelVersion.artifact_uri.label("output_artifact_uri"),
            ModelVersion.external_model_id.label("output_external_model_id"),
            json_rows(events, TrainingJobEvent.id.desc()).label("events"),
            json_rows(reports, TrainingJobEvent.id.desc()).label("reports"),
            links.label("datasets"),
            select(RETRY.id).where(RETRY.retry_of_id == job_id).limit(1).scalar_subquery().label("retried_as"),
        )
        .join(User, User.id == TrainingJob.user_id).join(AIModel, AIModel.id == TrainingJob.base_model_id)
        .outerjoin(Minion, Minion.id == TrainingJob.minion_id)
        .outerjoin(Provider, Provider.id == TrainingJob.provider_id)
        .outerjoin(ModelVersion, ModelVersion.id == TrainingJob.output_model_version_id)
        .outerjoin(OUTPUT_MODEL, OUTPUT_MODEL.id == ModelVersion.model_id)
        .where(TrainingJob.id == job_id)
    ).first()
    if row is None:
        return None
    return JobPage(
        job=row,
        datasets=rows_of(row.datasets) if with_datasets else [],
        events=[{**event, "created_at": timestamp_of(event["created_at"])} for event in rows_of(row.events)],
        chart=metric_chart([report["metrics"] for report in reversed(rows_of(row.reports))]),
        retried_as=row.retried_as,
    )
