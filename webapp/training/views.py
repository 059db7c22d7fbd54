"""Job monitoring pages: the list, a job's detail, its live row, cancel and retry."""
from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from webapp.accounts.access import login_required
from webapp.accounts.models import User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.htmx import is_htmx, render_page_or_block
from webapp.pagination import page_args, paginate
from webapp.support.panels import PANEL_ROWS, user_panel
from webapp.training import bp
from webapp.training.forms import JobFilterForm
from webapp.training.models import TrainingJob
from webapp.training.services import (
    JobError, cancel_job, is_active, job_events, job_for, job_list_statement, metric_chart, retry_job,
    staff_summary,
)


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


@bp.get("/jobs/<int:job_id>/row")
@login_required
def job_row(job_id: int):
    job = viewable_job(job_id)
    return render_template("training/_job_row.html", job=job,
                           show_owner=current_user.has_permission("jobs.read_all"))


@bp.get("/jobs/<int:job_id>")
@login_required
def job_detail(job_id: int):
    """The full page; an HTMX poll gets the live panel plus the events after ``after``."""
    job = viewable_job(job_id)
    after = request.args.get("after", 0, type=int)
    events = job_events(job, after_id=after if is_htmx() else 0)
    return render_page_or_block(
        "training/job_detail.html", "job_live",
        job=job, events=events, new_events=events if is_htmx() else [],
        last_event_id=max([after] + [event.id for event in events]),
        chart=metric_chart(job), active=is_active(job),
        can_manage=job.user_id == current_user.id or current_user.has_permission("jobs.manage"),
        retried_as=db.session.scalar(select(TrainingJob.id).where(TrainingJob.retry_of_id == job.id).limit(1)),
    )


@bp.post("/jobs/<int:job_id>/cancel")
@login_required
def job_cancel(job_id: int):
    job = viewable_job(job_id, "jobs.manage")
    run_action(lambda: cancel_job(job, current_user))
    flash(f"Job #{job.id} was canceled.", "success")
    return navigate(url_for("training.job_detail", job_id=job.id))


@bp.post("/jobs/<int:job_id>/retry")
@login_required
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


def navigate(url: str):
    """Go to ``url``: a redirect, or HX-Redirect for an HTMX request so the whole page changes."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


@user_panel("training/_support_panel.html", "users.read", order=30)
def support_jobs_panel(user: User) -> dict:
    """The user's latest training jobs, on the support user page."""
    return {"jobs": db.session.scalars(
        select(TrainingJob).where(TrainingJob.user_id == user.id)
        .order_by(TrainingJob.id.desc()).limit(PANEL_ROWS)).all()}
