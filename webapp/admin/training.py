"""Training: datasets, jobs, their datasets and event log, and the runners."""
from __future__ import annotations

from flask import current_app, flash
from flask_login import current_user
from flask_wtf.file import FileField, FileRequired
from sqlalchemy.orm import joinedload

from webapp.admin.base import USER_LOOKUP, SecureModelView, admin_action, choice_filter, choices, lookup, percent
from webapp.admin.catalog import MODEL_LOOKUP
from webapp.datasets.models import DATASET_VISIBILITIES, Dataset
from webapp.datasets.services import DatasetError, approve_dataset, file_chunks, upload_dataset
from webapp.datasets.views import FORM_OVERHEAD_BYTES
from webapp.extensions import db
from webapp.inputs import allow_larger_body
from webapp.providers.models import ModelVersion
from webapp.quotas import QuotaExceeded
from webapp.training.models import (
    EVENT_LEVELS, JOB_STATUSES, JOB_TYPES, SPLITS, JobRunner, JobRunnerReport, TrainingJob, TrainingJobDataset,
    TrainingJobEvent, TrainingJobStatusCount, TrainingWorker,
)
from webapp.training.services import JobError, cancel_job

CATEGORY = "Training"


class TrainingView(SecureModelView):
    read_permission = "jobs.read_all"
    write_permission = "jobs.manage"


class DatasetView(TrainingView):
    """Datasets are created by uploading a file (validated as users' uploads are); staff approve public ones."""

    column_list = ("id", "name", "slug", "owner", "visibility", "approved_at", "format", "row_count", "size_bytes",
                   "created_at")
    column_searchable_list = ("name", "slug")
    column_filters = (choice_filter(Dataset.visibility, "Visibility", DATASET_VISIBILITIES), "format",
                      "owner.email", "approved_at", "created_at")
    form_columns = ("owner", "name", "slug", "description", "visibility", "format", "uri", "size_bytes",
                    "row_count", "checksum", "tags")
    # The file, its URI, size, rows and checksum come from the upload; a new dataset has nothing else to type.
    create_form_columns = ("upload", "owner", "name", "description", "visibility")
    form_extra_fields = {"upload": FileField("File (.jsonl, .json or .csv)", validators=[FileRequired()])}
    form_choices = {"visibility": choices(DATASET_VISIBILITIES)}
    form_ajax_refs = {"owner": USER_LOOKUP}
    eager = (joinedload(Dataset.owner),)

    def get_create_form(self):
        self.form_columns = self.create_form_columns
        try:
            return super().get_create_form()
        finally:
            del self.form_columns

    def get_edit_form(self):
        """The edit form without the upload: a stored dataset's file is not replaced in place."""
        self.form_extra_fields = None
        try:
            return super().get_edit_form()
        finally:
            del self.form_extra_fields

    def create_model(self, form):
        """Upload through the datasets service; a file with problems is refused with its first problems listed."""
        upload = form.upload.data
        try:
            outcome = upload_dataset(
                form.owner.data, " ".join((form.name.data or "").split()), form.description.data or "",
                form.visibility.data, upload.filename or "", file_chunks(upload.stream),
                current_app.config["DATASET_MAX_BYTES"], actor=current_user)
            if outcome.dataset is not None:
                # Staff uploading a public dataset are the approval.
                approve_dataset(outcome.dataset, current_user)
                db.session.commit()
        except (DatasetError, QuotaExceeded) as error:
            db.session.rollback()
            flash(str(error), "error")
            return False
        if outcome.dataset is None:
            problems = "; ".join(f"line {p.line}: {p.reason}" for p in outcome.report.problems[:10])
            flash(f"The file was not stored: {outcome.report.problem_count} problems ({problems}).", "error")
            return False
        return outcome.dataset

    @admin_action("approve", "Approve for the catalogue", "jobs.manage", "List the selected public datasets in the catalogue?")
    def action_approve(self, ids: list[str]) -> None:
        self.run_bulk(ids, lambda dataset: approve_dataset(dataset, current_user),
                      "{count} datasets approved ({skipped} were private, platform or already approved).")


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
    # The details page shows every link of the job (a version by its model's name); the list three of them.
    eager = (joinedload(TrainingJob.user), joinedload(TrainingJob.base_model), joinedload(TrainingJob.minion),
             joinedload(TrainingJob.provider), joinedload(TrainingJob.retry_of),
             joinedload(TrainingJob.output_model_version).joinedload(ModelVersion.model))
    list_eager = (joinedload(TrainingJob.user), joinedload(TrainingJob.base_model), joinedload(TrainingJob.minion))

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


class JobRunnerReportView(TrainingView):
    """Idempotency keys of applied runner reports: read-only, written by the runner API."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "runner", "report_id", "training_job", "created_at")
    column_searchable_list = ("report_id",)
    column_filters = ("created_at",)
    eager = (joinedload(JobRunnerReport.runner), joinedload(JobRunnerReport.training_job))


class TrainingJobStatusCountView(TrainingView):
    """Jobs per status, kept by database triggers: read-only."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("status", "count", "updated_at")
    column_filters = ("status", "updated_at")


class TrainingWorkerView(TrainingView):
    """Celery workers as they last reported themselves (the workers page reads them): written only by the workers."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "name", "host", "pid", "queues", "started_at", "heartbeat_at", "stopped_at", "processed",
                   "failed")
    column_searchable_list = ("name", "host")
    column_filters = ("host", "heartbeat_at", "stopped_at")
    column_default_sort = ("heartbeat_at", True)


def admin_upload_body_limit() -> tuple[int, str]:
    """The admin's create form carries the dataset file: up to the dataset limit, past the app-wide one."""
    limit = current_app.config["DATASET_MAX_BYTES"]
    return limit + FORM_OVERHEAD_BYTES, f"That file is larger than the {limit:,} bytes a dataset may have."


allow_larger_body("admin_datasets.create_view", admin_upload_body_limit)


def views() -> list[SecureModelView]:
    return [
        DatasetView(Dataset, "admin_datasets", "Datasets", CATEGORY),
        TrainingJobView(TrainingJob, "admin_training_jobs", "Training jobs", CATEGORY),
        TrainingJobDatasetView(TrainingJobDataset, "admin_training_job_datasets", "Job datasets", CATEGORY),
        TrainingJobEventView(TrainingJobEvent, "admin_training_job_events", "Job events", CATEGORY),
        JobRunnerView(JobRunner, "admin_job_runners", "Runners", CATEGORY),
        JobRunnerReportView(JobRunnerReport, "admin_job_runner_reports", "Runner reports", CATEGORY),
        TrainingJobStatusCountView(TrainingJobStatusCount, "admin_training_job_status_counts", "Jobs per status",
                                   CATEGORY),
        TrainingWorkerView(TrainingWorker, "admin_training_workers", "Workers", CATEGORY),
    ]
