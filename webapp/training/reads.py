"""What the job page and the new-job form show, read as the columns they show: the job page in one query,
the form in one after its plan's terms.

Short lists come as JSON rows (``json_rows``) in the same round trip as the row they belong to.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, null, or_, select
from sqlalchemy.orm import aliased

from webapp import quotas
from webapp.accounts.models import User
from webapp.datasets.models import Dataset
from webapp.db import dataclass_of, json_rows, rows_of, timestamp_of
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.providers.models import AIModel, ModelVersion, Provider, UserProviderConfig
from webapp.training.models import TrainingJob, TrainingJobDataset, TrainingJobEvent
from webapp.training.services import RETRY, job_type_for, visible_jobs

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


# --- the new-job form ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MinionChoice:
    id: int
    name: str
    model_id: int
    version: str | None  # of its current model version


@dataclass(frozen=True)
class ModelChoice:
    id: int
    name: str
    model_type: str
    provider_id: int | None
    provider_name: str | None


@dataclass(frozen=True)
class DatasetChoice:
    id: int
    name: str
    owner_user_id: int | None
    format: str
    row_count: int | None


@dataclass(frozen=True)
class ProviderKey:
    """A provider the user holds an enabled key of, and the key's last characters."""

    provider_id: int
    api_key_last4: str | None


@dataclass
class JobChoices:
    """What ``user`` may pick on /jobs/new: their minions, the models they may train, the datasets they may read;
    and what the form's defaults and preview read: their latest job's datasets by split, their provider keys,
    their plan's terms and the use of its training quotas."""

    minions: list[MinionChoice]
    models: list[ModelChoice]
    datasets: list[DatasetChoice]
    last_splits: dict[str, int]
    provider_keys: dict[int, ProviderKey]
    terms: quotas.Allowance
    usage: dict[str, int]


MAX_DATASET_CHOICES = 500
PREVIEWED_QUOTAS = ("training_jobs", "training_minutes", "concurrent_jobs")


def job_choices(user: User) -> JobChoices:
    """``user``'s choices, form defaults and preview figures: their plan's terms, then the rest in one query."""
    terms = quotas.allowance(user)
    limited = [key for key in PREVIEWED_QUOTAS if terms.limit(key) is not None]
    minions = select(Minion.id, Minion.name, Minion.model_id, ModelVersion.version) \
        .outerjoin(ModelVersion, ModelVersion.id == Minion.model_version_id) \
        .where(Minion.owner_user_id == user.id, Minion.status != "retired")
    models = select(AIModel.id, AIModel.name, AIModel.model_type, AIModel.provider_id,
                    Provider.name.label("provider_name")) \
        .outerjoin(Provider, Provider.id == AIModel.provider_id) \
        .where(AIModel.is_active.is_(True), or_(AIModel.model_type != "custom", AIModel.owner_user_id == user.id))
    datasets = select(Dataset.id, Dataset.name, Dataset.owner_user_id, Dataset.format, Dataset.row_count) \
        .where(or_(Dataset.owner_user_id == user.id, Dataset.visibility == "public")).limit(MAX_DATASET_CHOICES)
    # People train on the same data again: the latest job's datasets are the form's defaults.
    latest = select(TrainingJob.id).where(TrainingJob.user_id == user.id) \
        .order_by(TrainingJob.created_at.desc(), TrainingJob.id.desc()).limit(1).scalar_subquery()
    splits = select(TrainingJobDataset.split, TrainingJobDataset.dataset_id) \
        .where(TrainingJobDataset.training_job_id == latest)
    keys = select(UserProviderConfig.provider_id, UserProviderConfig.api_key_last4).where(
        UserProviderConfig.user_id == user.id, UserProviderConfig.is_enabled.is_(True),
        UserProviderConfig.api_key_ciphertext.is_not(None))
    columns = {
        "minions": json_rows(minions, Minion.name, Minion.id),
        "models": json_rows(models, AIModel.model_type.desc(), AIModel.name, AIModel.id),
        "datasets": json_rows(datasets, Dataset.owner_user_id.is_(None), Dataset.name, Dataset.id),
        "splits": json_rows(splits, TrainingJobDataset.id),
        "keys": json_rows(keys, UserProviderConfig.id),
        **{f"used_{key}": quotas.usage_count(user.id, key, terms) for key in limited},
    }
    row = db.session.execute(select(*(column.label(name) for name, column in columns.items()))).one()._mapping
    return JobChoices(
        minions=rows_as(MinionChoice, row["minions"]),
        models=rows_as(ModelChoice, row["models"]),
        datasets=rows_as(DatasetChoice, row["datasets"]),
        last_splits={link["split"]: link["dataset_id"] for link in rows_of(row["splits"])},
        provider_keys={key.provider_id: key for key in rows_as(ProviderKey, row["keys"])},
        terms=terms,
        usage={key: int(row[f"used_{key}"] or 0) for key in limited},
    )


def rows_as(kind: type, value: list[dict[str, Any]]) -> list:
    """JSON rows as instances of ``kind``, a dataclass of (some of) their columns."""
    return [dataclass_of(kind, row) for row in rows_of(value)]


@dataclass
class JobPreview:
    """What starting a job will use: this period's jobs and minutes left, jobs at once, and whose key."""

    jobs_left: int | None  # None: unlimited
    minutes_left: int | None
    concurrent_left: int | None
    period_end: datetime
    job_type: str
    provider_key: ProviderKey | None
    provider_name: str | None
    # What minutes past the limit cost where the plan bills them instead of blocking, else None.
    minutes_overage: str | None = None

    @property
    def blocked(self) -> str | None:
        """Why the job cannot start now, or None."""
        if self.jobs_left == 0:
            return "You have no training jobs left this period."
        if self.minutes_left == 0 and self.minutes_overage is None:
            return "You have no training minutes left this period."
        if self.concurrent_left == 0:
            return "You already run as many jobs at once as your plan allows; wait for one to finish."
        if self.job_type == "external" and self.provider_key is None:
            return f"Add your {self.provider_name} API key on the Providers page first."
        return None


def job_preview(choices: JobChoices, model: ModelChoice | None) -> JobPreview:
    """What a job of ``model`` (one of ``choices``) will use, from the figures ``job_choices`` read."""
    terms = choices.terms

    def left(key: str) -> int | None:
        limit = terms.limit(key)
        return None if limit is None else max(limit - choices.usage[key], 0)

    job_type = job_type_for(model) if model else "internal"
    price = terms.overage_price("training_minutes") if terms.at_limit("training_minutes") == quotas.OVERAGE else None
    overage = None
    if price:
        overage = f"{price.cents} cents per {'minute' if price.per == 1 else f'{price.per:,} minutes'} past the limit"
    return JobPreview(left("training_jobs"), left("training_minutes"), left("concurrent_jobs"), terms.period_end,
                      job_type, choices.provider_keys.get(model.provider_id) if job_type == "external" else None,
                      model.provider_name if model else None, overage)
