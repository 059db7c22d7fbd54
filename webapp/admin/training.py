"""Training: datasets, jobs, their datasets and event log, and the runners."""
from __future__ import annotations

from flask_login import current_user
from sqlalchemy.orm import joinedload

from webapp.admin.base import USER_LOOKUP, SecureModelView, admin_action, choice_filter, choices, lookup, percent
from webapp.admin.catalog import MODEL_LOOKUP
from webapp.training.models import (
    DATASET_VISIBILITIES, EVENT_LEVELS, JOB_STATUSES, JOB_TYPES, SPLITS, Dataset, JobRunner, TrainingJob,
    TrainingJobDataset, TrainingJobEvent, TrainingJobStatusCount,
)
from webapp.training.services import JobError, cancel_job

CATEGORY = "Training"


class TrainingView(SecureModelView):
    read_permission = "jobs.read_all"
    write_permission = "jobs.manage"


class DatasetView(TrainingView):
    column_list = ("id", "name", "slug", "owner", "visibility", "format", "row_count", "size_bytes", "created_at")
    column_searchable_list = ("name", "slug")
    column_filters = (choice_filter(Dataset.visibility, "Visibility", DATASET_VISIBILITIES), "format",
                      "owner.email", "created_at")
    form_columns = ("owner", "name", "slug", "description", "visibility", "format", "uri", "size_bytes",
                    "row_count", "checksum", "tags")
    form_choices = {"visibility": choices(DATASET_VISIBILITIES)}
    form_ajax_refs = {"owner": USER_LOOKUP}
    eager = (joinedload(Dataset.owner),)


class TrainingJobView(TrainingView):
    column_list = ("id", "name", "user", "status", "job_type", "base_model", "minion", "progress", "queued_at",
                   "finished_at")
    column_searchable_list = ("name", "user.email", "external_job_id")
    column_filters = (choice_filter(TrainingJob.status, "Status", JOB_STATUSES),
                      choice_filter(TrainingJob.job_type, "Type", JOB_TYPES),
                      "queued_at", "finished_at", "user.email")
    column_default_sort = ("queued_at", True)
    column_formatters = {"progress": percent}
    # Status, progress, metrics and timings move through the job state machine and the runners' reports.
    form_columns = ("name", "user", "minion", "base_model", "job_type", "provider", "external_job_id",
                    "hyperparameters", "queued_at", "retry_of", "output_model_version")
    form_choices = {"job_type": choices(JOB_TYPES)}
    form_ajax_refs = {"user": USER_LOOKUP, "minion": lookup("name"), "base_model": MODEL_LOOKUP,
                      "provider": lookup("name", "slug"), "retry_of": lookup("name"),
                      "output_model_version": lookup("version")}
    eager = (joinedload(TrainingJob.user), joinedload(TrainingJob.base_model), joinedload(TrainingJob.minion))

    @admin_action("cancel", "Cancel", "jobs.manage", "Cancel the selected jobs?")
    def action_cancel(self, ids: list[str]) -> None:
        def cancel(job: TrainingJob) -> bool:
            try:
                cancel_job(job, current_user)
            except JobError:
                return False
            return True

        self.run_bulk(ids, cancel, "{count} jobs canceled ({skipped} had already finished).")


class TrainingJobDatasetView(TrainingView):
    column_list = ("id", "training_job", "dataset", "split", "created_at")
    column_searchable_list = ("training_job.name", "dataset.name")
    column_filters = (choice_filter(TrainingJobDataset.split, "Split", SPLITS), "created_at")
    form_columns = ("training_job", "dataset", "split")
    form_choices = {"split": choices(SPLITS)}
    form_ajax_refs = {"training_job": lookup("name"), "dataset": lookup("name", "slug")}
    eager = (joinedload(TrainingJobDataset.training_job), joinedload(TrainingJobDataset.dataset))


class TrainingJobEventView(TrainingView):
    """The jobs' log, written by the runners: read-only."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "training_job", "level", "message", "progress", "created_at")
    column_formatters = {"progress": percent}
    column_searchable_list = ("message",)
    column_filters = (choice_filter(TrainingJobEvent.level, "Level", EVENT_LEVELS), "created_at",
                      "training_job.name")
    column_default_sort = ("id", True)
    eager = (joinedload(TrainingJobEvent.training_job),)


class JobRunnerView(TrainingView):
    """Runners are created with their one-time token on the jobs pages; here they are renamed or disabled."""

    allow_create = False
    column_list = ("id", "name", "is_active", "last_seen_at", "created_at")
    column_searchable_list = ("name",)
    column_filters = ("is_active", "last_seen_at")
    form_columns = ("name", "is_active")
    maintained = ("last_seen_at",)


class TrainingJobStatusCountView(TrainingView):
    """Jobs per status, kept by database triggers: read-only."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("status", "count", "updated_at")
    column_filters = ("status", "updated_at")


def views() -> list[SecureModelView]:
    return [
        DatasetView(Dataset, "admin_datasets", "Datasets", CATEGORY),
        TrainingJobView(TrainingJob, "admin_training_jobs", "Training jobs", CATEGORY),
        TrainingJobDatasetView(TrainingJobDataset, "admin_training_job_datasets", "Job datasets", CATEGORY),
        TrainingJobEventView(TrainingJobEvent, "admin_training_job_events", "Job events", CATEGORY),
        JobRunnerView(JobRunner, "admin_job_runners", "Runners", CATEGORY),
        TrainingJobStatusCountView(TrainingJobStatusCount, "admin_training_job_status_counts", "Jobs per status",
                                   CATEGORY),
    ]
