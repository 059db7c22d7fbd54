"""My datasets, the upload with its validation report, a dataset's page, and the public catalogue."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, render_template, request, send_file, url_for
from flask_login import current_user

from webapp.accounts.access import login_required
from webapp.artifacts import delete_artifact, open_artifact
from webapp.datasets import services
from webapp.datasets.forms import CatalogueSearchForm, DatasetUploadForm
from webapp.datasets.formats import REPORTED_PROBLEMS
from webapp.datasets.models import Dataset
from webapp.errors import error_response
from webapp.extensions import db
from webapp.htmx import navigate, render_page_or_block
from webapp.inputs import allow_larger_body
from webapp.pagination import page_args
from webapp.quotas import QuotaExceeded

bp = Blueprint("datasets", __name__)

# Room in an upload's body for the form's other fields and the multipart framing.
FORM_OVERHEAD_BYTES = 64 * 1024


def upload_body_limit() -> tuple[int, str]:
    """An upload may be as large as the user's plan allows a file to be (signed out: the app-wide limit)."""
    if not current_user.is_authenticated:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        return limit, f"The request body is larger than {limit} bytes."
    limit = services.size_limit(current_user)
    return (limit + FORM_OVERHEAD_BYTES,
            f"That file is larger than the {limit:,} bytes your plan allows; nothing was stored.")


allow_larger_body("datasets.dataset_upload", upload_body_limit)


@bp.get("/datasets")
@login_required
def dataset_list():
    page, per_page = page_args()
    return render_page_or_block(
        "datasets/dataset_list.html", "dataset_table",
        datasets=services.owned_datasets(current_user, page, per_page),
        page_url=lambda number: url_for("datasets.dataset_list", page=number),
    )


def upload_page(form: DatasetUploadForm, limit: int, status: int = 200, report=None, notice: str | None = None):
    return render_page_or_block("datasets/dataset_upload.html", "upload_panel", status=status, form=form,
                                limit=limit, report=report, notice=notice, reported_problems=REPORTED_PROBLEMS)


@bp.route("/datasets/new", methods=["GET", "POST"])
@login_required
def dataset_upload():
    limit = services.size_limit(current_user)
    if request.method == "GET":
        return upload_page(DatasetUploadForm(formdata=None), limit)
    form = DatasetUploadForm()
    if not form.validate_on_submit():
        return upload_page(form, limit, 422)
    upload = form.file.data
    try:
        outcome = services.upload_dataset(
            current_user, form.name.data, form.description.data, form.visibility.data, upload.filename or "",
            services.file_chunks(upload.stream), limit, actor=current_user)
        db.session.commit()
    except QuotaExceeded as error:
        db.session.rollback()
        return upload_page(form, limit, 422, notice=str(error))
    except services.DatasetError as error:
        db.session.rollback()
        getattr(form, error.field or "file").errors.append(str(error))
        return upload_page(form, limit, error.status)
    if outcome.dataset is None:
        return upload_page(form, limit, 422, report=outcome.report)
    flash(f"“{outcome.dataset.name}” is stored: {outcome.report.rows_accepted:,} rows accepted.", "success")
    return navigate(url_for("datasets.dataset_detail", dataset_id=outcome.dataset.id))


@bp.get("/datasets/public")
@login_required
def dataset_catalogue():
    form = CatalogueSearchForm(request.args)
    query = form.q.data if form.validate() else ""
    page, per_page = page_args()
    return render_page_or_block(
        "datasets/dataset_catalogue.html", "catalogue_results", form=form, query=query,
        datasets=services.catalogue(query, page, per_page),
        page_url=lambda number: url_for("datasets.dataset_catalogue", q=query or None, page=number),
    )


def viewable_or_404(dataset_id: int) -> Dataset:
    dataset = services.viewable_dataset(current_user, dataset_id)
    if dataset is None:
        abort(404)
    return dataset


@bp.get("/datasets/<int:dataset_id>")
@login_required
def dataset_detail(dataset_id: int):
    dataset = viewable_or_404(dataset_id)
    trusted = services.may_download(current_user, dataset)
    return render_template(
        "datasets/dataset_detail.html", dataset=dataset, preview=services.preview(dataset),
        split=services.split_suggestion(dataset.row_count or 0), may_download=trusted,
        owner=dataset.owner_user_id == current_user.id,
        jobs=services.jobs_using(dataset) if trusted else [],
    )


@bp.get("/datasets/<int:dataset_id>/download")
@login_required
def dataset_download(dataset_id: int):
    dataset = viewable_or_404(dataset_id)
    if not services.may_download(current_user, dataset):
        abort(404)
    try:
        stream = open_artifact(dataset.uri)
    except (OSError, ImportError, ValueError):
        current_app.logger.exception("dataset %s: cannot read %s", dataset.id, dataset.uri)
        return error_response(503, "The file cannot be read from the artifact store right now. Try again later.")
    return send_file(stream, as_attachment=True,
                     download_name=f"{dataset.slug}.{dataset.format}",
                     mimetype="text/csv" if dataset.format == "csv" else "application/jsonl")


@bp.route("/datasets/<int:dataset_id>/delete", methods=["GET", "POST"])
@login_required
def dataset_delete(dataset_id: int):
    dataset = services.owned_dataset(current_user, dataset_id)
    if dataset is None:
        abort(404)
    if request.method == "GET":
        confirm = {"title": f"Delete “{dataset.name}” for good?", "danger": True,
                   "text": f"Its file ({dataset.row_count or 0:,} rows) is removed from storage and cannot be "
                           f"brought back. Finished jobs that used it keep their history.",
                   "action": url_for("datasets.dataset_delete", dataset_id=dataset.id), "button": "Delete the dataset",
                   "slot": "#dataset-confirm-slot", "cancel_url": url_for("datasets.dataset_detail", dataset_id=dataset.id)}
        return render_page_or_block("datasets/dataset_confirm.html", "confirm", confirm=confirm)
    name = dataset.name
    try:
        uri = services.delete_dataset(dataset, current_user)
        db.session.commit()
    except services.DatasetError as error:
        db.session.rollback()
        flash(str(error), "error")
        return navigate(url_for("datasets.dataset_detail", dataset_id=dataset_id))
    try:
        delete_artifact(uri)
    except OSError:
        current_app.logger.exception("dataset %s deleted; its file %s could not be removed", dataset_id, uri)
    flash(f"“{name}” is deleted.", "success")
    return navigate(url_for("datasets.dataset_list"))
