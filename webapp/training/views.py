"""Job monitoring pages: the list, a job's detail, its live row, cancel and retry; the staff workers page."""
from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from wtforms import SelectChoice

from webapp.accounts.access import login_required, permission_required, verified_email_required
from webapp.accounts.models import User
from webapp.conditional import conditional
from webapp.db import utcnow
from webapp.extensions import db
from webapp.htmx import is_htmx, navigate, render_page_or_block
from webapp.pagination import page_args, paginate
from webapp.support.panels import PANEL_ROWS, user_panel
from webapp.minions import ownership
from webapp.training import bp, playground
from webapp import quotas
from webapp.training.forms import JobFilterForm, PlaygroundForm, job_form
from webapp.training.models import TrainingJob
from webapp.training.reads import job_choices, job_page, job_preview
from webapp.training.runtime import hyperparameters_for
from webapp.training.services import (
    JobError, cancel_job, is_active, job_for, job_list_statement, job_state, job_type_for, new_job, retry_job,
    start_job, staff_summary,
)
from webapp.times import relative_text
from webapp.training.workers import board_state, waiting_for_worker_since, worker_board, worker_state


@bp.app_template_filter("duration")
def format_duration(delta) -> str:
    """A timedelta as "2 h 15 min", "40 min" or "12 s"."""
    if delta is None:
        return "—"
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


@bp.app_template_global("age")
def age(moment):
    """How long ago ``moment`` was, for the duration filter."""
    return utcnow() - moment


@bp.app_template_global("job_duration")
def job_duration(job: TrainingJob):
    if job.started_at is None:
        return None
    return (job.finished_at or utcnow()) - job.started_at


def viewable_job(job_id: int, permission: str = "jobs.read_all") -> TrainingJob:
    """The job, or 404 when it is not the user's and they lack ``permission``."""
    job = job_for(current_user, job_id, permission)
    if job is None:
        abort(404)
    return job


@bp.get("/jobs")
@login_required
def job_list():
    form = JobFilterForm(request.args)
    filters = form.filters()
    page, per_page = page_args()
    jobs = paginate(job_list_statement(current_user, filters), page, per_page)
    staff = current_user.has_permission("jobs.read_all")
    args = {key: value for key, value in request.args.items() if key != "page" and value}
    return render_page_or_block(
        "training/job_list.html", "job_table",
        form=form, jobs=jobs, show_owner=staff,
        summary=staff_summary() if staff and not is_htmx() else None,
        page_url=lambda number: url_for("training.job_list", page=number, **args),
    )


@bp.route("/jobs/new", methods=["GET", "POST"])
@login_required
def job_new():
    """Choose a minion, model, datasets and hyperparameters; the preview says what the job will use.

    A GET with the form's values (HTMX, on changing the minion or model) re-renders the form with the
    chosen trainer's hyperparameters; a POST starts the job and opens its page.
    """
    choices = job_choices(current_user)
    values = request.form if request.method == "POST" else request.args
    minion = chosen(choices.minions, values.get("minion", type=int)) or next(iter(choices.minions), None)
    model_id = values.get("base_model", type=int) if "base_model" in values else None
    model = chosen(choices.models, model_id) or chosen(choices.models, minion.model_id if minion else None)
    job_type = job_type_for(model) if model else "internal"
    form = job_form(hyperparameters_for(job_type), request.form if request.method == "POST" else None)
    form.minion.choices = [SelectChoice(m.id, m.name) for m in choices.minions]
    form.base_model.choices = [SelectChoice(m.id, model_label(m, minion)) for m in choices.models]
    form.train_dataset.choices = [SelectChoice(d.id, dataset_label(d)) for d in choices.datasets]
    form.validation_dataset.choices = [SelectChoice("", "None: hold out a fifth of the train split")] + \
        form.train_dataset.choices
    if request.method == "GET":
        form.minion.data, form.base_model.data = (minion.id if minion else None), (model.id if model else None)
        previous = choices.last_splits
        form.train_dataset.data = values.get("train_dataset", type=int) or previous.get("train")
        form.validation_dataset.data = values.get("validation_dataset", type=int) or previous.get("validation")
    status = 200
    if request.method == "POST" and form.validate():
        try:
            new = new_job(minion.id, model.id, form.train_dataset.data, form.validation_dataset.data,
                          form.hyperparameters(), form.name.data or None)
            job = start_job(current_user, new)
            db.session.commit()
        except (JobError, quotas.QuotaExceeded) as error:
            db.session.rollback()
            flash(str(error), "error")
            status = getattr(error, "status", 409)
        else:
            flash(f"Job #{job.id} is queued; this page follows it live.", "success")
            return navigate(url_for("training.job_detail", job_id=job.id))
    elif request.method == "POST":
        status = 422
    return render_page_or_block("training/job_new.html", "job_form", status=status, form=form,
                                choices=choices, minion=minion, model=model, job_type=job_type,
                                preview=job_preview(choices, model))


def chosen(rows, row_id):
    """The row of ``rows`` with id ``row_id`` (None when absent): a choice is only ever one we offered."""
    return next((row for row in rows if row.id == row_id), None)


def model_label(model, minion) -> str:
    kind = "external, trains at " + model.provider_name if model.model_type == "external" and model.provider_id \
        else model.model_type
    current = f", {minion.name}'s current version {minion.version}" \
        if minion and minion.model_id == model.id and minion.version is not None else ""
    return f"{model.name} ({kind}{current})"


def dataset_label(dataset) -> str:
    rows = f"{dataset.row_count:,} rows" if dataset.row_count is not None else "rows unknown"
    return f"{dataset.name} ({'public' if dataset.owner_user_id is None else 'yours'}, {dataset.format}, {rows})"


@bp.get("/jobs/<int:job_id>/row")
@login_required
def job_row(job_id: int):
    return conditional(lambda: live_state(job_id), lambda: render_template(
        "training/_job_row.html", job=viewable_job(job_id), show_owner=current_user.has_permission("jobs.read_all")),
        fragment=True)


@bp.get("/jobs/<int:job_id>")
@login_required
def job_detail(job_id: int):
    """The full page; an HTMX poll gets the live panel plus the events after ``after`` (304 when nothing changed)."""
    return conditional(lambda: live_state(job_id), lambda: job_detail_page(job_id))


def job_detail_page(job_id: int):
    after = request.args.get("after", 0, type=int)
    # A poll renders the live panel alone: the events after its cursor, no datasets.
    page = job_page(current_user, job_id, after_id=after if is_htmx() else 0, with_datasets=not is_htmx())
    if page is None:
        abort(404)
    job = page.job
    return render_page_or_block(
        "training/job_detail.html", "job_live",
        job=job, datasets=page.datasets, events=page.events, new_events=page.events if is_htmx() else [],
        last_event_id=max([after] + [event["id"] for event in page.events]),
        chart=page.chart, active=is_active(job),
        can_manage=job.user_id == current_user.id or current_user.has_permission("jobs.manage"),
        retried_as=page.retried_as,
        waiting_since=waiting_for_worker_since(job, dispatch_timeout()),
    )


def dispatch_timeout() -> timedelta:
    return timedelta(seconds=current_app.config["JOB_DISPATCH_TIMEOUT_SECONDS"])


def live_state(job_id: int) -> tuple:
    """A job's row and live panel as a conditional poll compares them: 404 unless the viewer may see the job.

    Besides what the job's read returns, the texts that change with time alone: its duration
    and how long it has waited for a worker, computed as the templates compute them.
    """
    state = job_state(current_user, job_id)
    if state is None:
        abort(404)
    waiting = waiting_for_worker_since(state, dispatch_timeout())
    return (*state, format_duration(job_duration(state)), waiting and format_duration(age(waiting)))


@bp.post("/jobs/<int:job_id>/cancel")
@login_required
def job_cancel(job_id: int):
    job = viewable_job(job_id, "jobs.manage")
    run_action(lambda: cancel_job(job, current_user))
    flash(f"Job #{job.id} was canceled.", "success")
    return navigate(url_for("training.job_detail", job_id=job.id))


@bp.post("/jobs/<int:job_id>/retry")
@login_required
@verified_email_required
def job_retry(job_id: int):
    job = viewable_job(job_id, "jobs.manage")
    retry, created = run_action(lambda: retry_job(job, current_user))
    if created:
        flash(f"Job #{job.id} was queued again as job #{retry.id}.", "success")
    else:
        flash(f"Job #{job.id} was already retried as job #{retry.id}.", "info")
    return navigate(url_for("training.job_detail", job_id=retry.id))


def run_action(action):
    """Run a job action and commit; a refused or concurrent action is a 409 with its reason."""
    try:
        result = action()
        db.session.commit()
    except JobError as error:
        db.session.rollback()
        abort(error.status, str(error))
    except StaleDataError:
        db.session.rollback()
        abort(409, "Someone else changed this job at the same moment. Reload the page and try again.")
    return result


@bp.get("/jobs/workers")
@permission_required("jobs.read_all")
def worker_list():
    """Staff: every worker from its heartbeats, the broker's queues and the oldest queued job; refreshes itself."""
    return conditional(workers_state, lambda: render_page_or_block(
        "training/worker_list.html", "worker_board",
        board=worker_board(current_app.extensions["celery"], stale_after())))


def stale_after() -> timedelta:
    return timedelta(seconds=current_app.config["WORKER_STALE_SECONDS"])


def workers_state() -> list:
    """The workers board as a conditional poll compares it, with the texts that change with time alone:
    each worker's state and last heartbeat ("just now", "3 min ago"), the oldest queued job's wait."""
    now, rows = utcnow(), board_state()
    texts = [(worker_state(row, now, stale_after()), relative_text(row.heartbeat_at, now))
             for row in rows if row.id is not None]
    oldest = rows[0].oldest_queued_at
    return [*rows, texts, oldest and format_duration(now - oldest)]


@user_panel("training/_support_panel.html", "users.read", order=30)
def support_jobs_panel(user: User) -> dict:
    """The user's latest training jobs, on the support user page."""
    return {"jobs": db.session.scalars(
        select(TrainingJob).where(TrainingJob.user_id == user.id)
        .order_by(TrainingJob.id.desc()).limit(PANEL_ROWS)).all()}


@bp.post("/minions/<int:minion_id>/playground")
@login_required
def minion_playground(minion_id: int):
    """Ask the owner's minion a question: the answer partial for HTMX (beside the form), else a page of its own."""
    minion = ownership.owned_minion(current_user, minion_id)
    if minion is None:
        abort(404)
    form = PlaygroundForm()
    answer, refusal, status = None, None, 200
    if form.validate_on_submit():
        try:
            answer = playground.ask(current_user, minion, form.prompt.data)
        except (playground.PlaygroundRefused, quotas.QuotaExceeded) as error:
            db.session.rollback()
            refusal, status = str(error), 422
    else:
        status = 422
    return render_page_or_block("minions/playground.html", "playground_answer", status=status, minion=minion,
                                prompt=form.prompt.data, prompt_errors=form.prompt.errors, answer=answer,
                                refusal=refusal)
