"""Dataset rules: upload (streamed to the artifact store, validated row by row), preview, catalogue, delete, approval.

An upload is kept only when every row passes: a file with problems, or one past
a limit, leaves no stored bytes and no row. Every change is audited and left for
the caller to commit, so one action is one transaction.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice

from flask import current_app
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from webapp import quotas
from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.artifacts import ArtifactTooLarge, delete_artifact, new_key, open_artifact, write_stream
from webapp.datasets.formats import Example, Problem, ValidationReport, format_for_filename, read_rows, validate
from webapp.datasets.models import Dataset
from webapp.db import escape_like, utcnow
from webapp.extensions import db
from webapp.pagination import Page, paginate
# Models only (as webapp.quotas reads them): a dataset's page lists the jobs that used it, and delete checks them.
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob, TrainingJobDataset

PREVIEW_ROWS = 20
# Fewer rows than this are all for training: too few to hold some out.
MIN_ROWS_FOR_VALIDATION_SPLIT = 10
VALIDATION_SHARE = 0.1
UPLOAD_CHUNK = 64 * 1024


class DatasetError(Exception):
    """An upload or change that is not allowed; nothing was kept. ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


@dataclass
class UploadOutcome:
    """A stored dataset, or the validation report of a file that was refused (and not kept)."""

    dataset: Dataset | None
    report: ValidationReport = field(default_factory=ValidationReport)


def size_limit(user: User) -> int:
    """The largest dataset file ``user``'s plan accepts, in bytes."""
    return quotas.allowance(user).limit("dataset_bytes") or current_app.config["DATASET_MAX_BYTES"]


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:180] or "dataset"


def _require_free_name(owner: User, slug: str, name: str) -> None:
    if db.session.scalar(select(Dataset.id).where(Dataset.owner_user_id == owner.id, Dataset.slug == slug)):
        raise DatasetError(f"You already have a dataset named “{name}” (or one that differs only in "
                           f"punctuation or case); choose another name or delete that one first.", field="name")


def upload_dataset(owner: User | None, name: str, description: str, visibility: str, filename: str,
                   chunks: Iterable[bytes], max_bytes: int, actor: User) -> UploadOutcome:
    """Stream ``chunks`` to the store, validate every row, and add the dataset only when all pass.

    ``owner`` None makes a platform dataset (the admin's path). Raises DatasetError
    for a name, format or size that is refused, QuotaExceeded past the plan's ``datasets``.
    """
    fmt = format_for_filename(filename)
    if fmt is None:
        raise DatasetError("Upload a .jsonl (or .json lines) or a .csv file.", field="file")
    slug = slugify(name)
    if owner is not None:
        # Early answers before the stream is read; the owner's lock is taken only to insert.
        _require_free_name(owner, slug, name)
        quotas.check(owner, "datasets")
    key = new_key("datasets", str(owner.id) if owner else "platform", suffix=f".{fmt}")
    try:
        stored = write_stream(key, chunks, max_bytes)
    except ArtifactTooLarge:
        raise DatasetError(f"The file is larger than the {max_bytes:,} bytes your plan allows.", field="file",
                           status=413) from None
    try:
        with open_artifact(stored.uri) as stream:
            report = validate(stream, fmt, current_app.config["DATASET_MAX_ROW_CHARS"])
        if not report.ok:
            delete_artifact(stored.uri)
            return UploadOutcome(None, report)
        if owner is not None:
            quotas.require(owner, "datasets")
            _require_free_name(owner, slug, name)
        dataset = Dataset(owner_user_id=owner.id if owner else None, name=name, slug=slug, description=description,
                          visibility=visibility, format=fmt, uri=stored.uri, size_bytes=stored.size_bytes,
                          row_count=report.rows_accepted, checksum=f"sha256:{stored.sha256}", tags=[])
        db.session.add(dataset)
        db.session.flush()
        record("dataset.create", dataset, {"name": name, "visibility": visibility, "format": fmt,
                                           "size_bytes": stored.size_bytes, "rows": report.rows_accepted,
                                           "sha256": stored.sha256}, actor=actor)
    except BaseException as error:
        # Whatever stops the row (a quota, a name taken meanwhile, the database), the bytes go too;
        # the caller rolls the transaction back.
        delete_artifact(stored.uri)
        if isinstance(error, IntegrityError):
            raise DatasetError(f"You already have a dataset named “{name}”.", field="name") from None
        raise
    return UploadOutcome(dataset, report)


def file_chunks(stream) -> Iterable[bytes]:
    """An uploaded file as chunks, so it is never held in memory whole."""
    return iter(lambda: stream.read(UPLOAD_CHUNK), b"")


# --- reading ------------------------------------------------------------------------------------


def owned_datasets(user: User, page: int, per_page: int) -> Page:
    return paginate(
        select(Dataset).where(Dataset.owner_user_id == user.id).order_by(Dataset.created_at.desc(), Dataset.id.desc()),
        page, per_page,
    )


def listed_condition():
    """Datasets in the public catalogue: platform ones marked public, and users' public ones staff approved."""
    return and_(Dataset.visibility == "public",
                or_(Dataset.owner_user_id.is_(None), Dataset.approved_at.is_not(None)))


def catalogue(query: str, page: int, per_page: int) -> Page:
    statement = select(Dataset).options(joinedload(Dataset.owner)).where(listed_condition())
    if query:
        pattern = f"%{escape_like(query.lower())}%"
        statement = statement.where(or_(func.lower(Dataset.name).like(pattern, escape="\\"),
                                        func.lower(Dataset.description).like(pattern, escape="\\")))
    return paginate(statement.order_by(Dataset.name, Dataset.id), page, per_page)


def viewable_dataset(user: User, dataset_id: int) -> Dataset | None:
    """The dataset when ``user`` owns it, it is listed in the catalogue, or they are staff; else None."""
    statement = select(Dataset).options(joinedload(Dataset.owner)).where(Dataset.id == dataset_id)
    if not user.has_permission("jobs.read_all"):
        statement = statement.where(or_(Dataset.owner_user_id == user.id, listed_condition()))
    return db.session.scalars(statement).first()


def owned_dataset(user: User, dataset_id: int) -> Dataset | None:
    return db.session.scalars(
        select(Dataset).where(Dataset.id == dataset_id, Dataset.owner_user_id == user.id)
    ).first()


def may_download(user: User, dataset: Dataset) -> bool:
    """The file goes to its owner and staff only (a catalogue entry shows its preview)."""
    return dataset.owner_user_id == user.id or user.has_permission("jobs.read_all")


@dataclass
class PreviewRow:
    line: int
    example: Example | None
    problem: Problem | None


def preview(dataset: Dataset, rows: int = PREVIEW_ROWS) -> list[PreviewRow] | None:
    """The first ``rows`` rows of the stored file, as the trainers read them; None when the store cannot be read."""
    try:
        with open_artifact(dataset.uri) as stream:
            return [PreviewRow(line, row if isinstance(row, Example) else None,
                               row if isinstance(row, Problem) else None)
                    for line, row in islice(read_rows(stream, dataset.format,
                                                      current_app.config["DATASET_MAX_ROW_CHARS"]), rows)]
    except (OSError, ImportError, ValueError):
        # A missing file, or a store this server has no driver for (s3:// without s3fs): the page still opens.
        current_app.logger.exception("dataset %s: cannot read %s", dataset.id, dataset.uri)
        return None


@dataclass(frozen=True)
class SplitSuggestion:
    train: int
    validation: int


def split_suggestion(row_count: int) -> SplitSuggestion:
    """Hold out a tenth for validation (at least one row) once there are enough rows to spare."""
    if row_count < MIN_ROWS_FOR_VALIDATION_SPLIT:
        return SplitSuggestion(row_count, 0)
    validation = max(1, math.floor(row_count * VALIDATION_SHARE))
    return SplitSuggestion(row_count - validation, validation)


def jobs_using(dataset: Dataset, limit: int = 50) -> list[tuple[TrainingJob, str]]:
    """The jobs that used the dataset, newest first, with the split each used it for."""
    return [(job, split) for job, split in db.session.execute(
        select(TrainingJob, TrainingJobDataset.split)
        .join(TrainingJobDataset, TrainingJobDataset.training_job_id == TrainingJob.id)
        .where(TrainingJobDataset.dataset_id == dataset.id)
        .order_by(TrainingJob.queued_at.desc(), TrainingJob.id.desc()).limit(limit)
    )]


# --- changes ------------------------------------------------------------------------------------


def delete_dataset(dataset: Dataset, actor: User) -> str:
    """Delete the row; refused while a queued or running job uses it. Returns the file's URI,
    for the caller to remove once the deletion is committed (so a rollback keeps the file).

    Finished jobs keep their history: their link to the dataset loses its target (ON DELETE SET NULL).
    """
    active = db.session.scalar(
        select(TrainingJob.id).join(TrainingJobDataset, TrainingJobDataset.training_job_id == TrainingJob.id)
        .where(TrainingJobDataset.dataset_id == dataset.id, TrainingJob.status.in_(ACTIVE_JOB_STATUSES))
        .order_by(TrainingJob.id).limit(1)
    )
    if active is not None:
        raise DatasetError(f"Training job #{active} is using “{dataset.name}”; it can be deleted once the job ends.",
                           status=409)
    record("dataset.delete", dataset, {"name": dataset.name, "uri": dataset.uri, "size_bytes": dataset.size_bytes},
           actor=actor)
    uri = dataset.uri
    db.session.delete(dataset)
    db.session.flush()
    return uri


def approve_dataset(dataset: Dataset, actor: User) -> bool:
    """List a user's public dataset in the catalogue; False when there was nothing to approve."""
    if dataset.visibility != "public" or dataset.owner_user_id is None or dataset.approved_at is not None:
        return False
    dataset.approved_at, dataset.approved_by_id = utcnow(), actor.id
    record("dataset.approve", dataset, {"approved_at": [None, dataset.approved_at]}, actor=actor)
    db.session.flush()
    return True
