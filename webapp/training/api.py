"""The runners' JSON API with ``Authorization: Bearer <token>``: claim the next job, heartbeat it, report on it.

Documented in docs/runner-api.md.
"""
from __future__ import annotations

from flask import jsonify, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp import jsonapi
from webapp.errors import error_response
from webapp.extensions import db
from webapp.training import api_bp
from webapp.training.models import TrainingJob
from webapp.training.services import (
    InvalidReport, JobError, ReportLimits, applied_report, claim_next_job, heartbeat, job_assignment,
    mark_seen, parse_capabilities, parse_report, receive_report, runner_for_token, runner_worker_name,
)


def unauthorized():
    return jsonapi.unauthorized("runner", "runner token")


@api_bp.post("/jobs/claim")
def job_claim():
    """Claim the oldest queued job this runner can run (atomic: each job goes to one claimer); 204 when none."""
    runner = runner_for_token(jsonapi.bearer_token())
    if runner is None:
        return unauthorized()
    try:
        capabilities = parse_capabilities(request.get_json(silent=True))
    except InvalidReport as error:
        return error_response(error.status, str(error))
    worker_name = runner_worker_name(runner)
    # End the token's read: the claim is then its transaction's first statement, so on SQLite it
    # takes the write lock before it reads, and concurrent claimers wait for each other instead of failing.
    db.session.rollback()
    job = claim_next_job(capabilities, worker_name)
    mark_seen(runner)
    db.session.commit()
    if job is None:
        return "", 204
    return jsonify(job_assignment(job))


@api_bp.post("/jobs/<int:job_id>/heartbeat")
def job_heartbeat(job_id: int):
    """Keep this runner's lease on a job it claimed; the answer says whether the job was canceled meanwhile."""
    runner = runner_for_token(jsonapi.bearer_token())
    if runner is None:
        return unauthorized()
    job = db.session.get(TrainingJob, job_id)
    if job is None:
        return error_response(404, f"There is no job #{job_id}.")
    if job.worker_name != runner_worker_name(runner):
        return error_response(409, f"Job #{job_id} is not held by runner {runner.name!r}; stop working on it.")
    worker_name, attempt = job.worker_name, job.attempts
    db.session.rollback()  # the heartbeat's update comes first in its transaction (see job_claim)
    held = heartbeat(job_id, worker_name, attempt)
    db.session.commit()
    return jsonify({"job": job_id, "status": job.status, "cancel_requested": not held})


@api_bp.post("/jobs/<int:job_id>/report")
def job_report(job_id: int):
    """Apply a runner's report to a job; any error leaves everything unchanged.

    The answer is built before the commit, so nothing that can fail runs after it.
    """
    runner = runner_for_token(jsonapi.bearer_token())
    if runner is None:
        return unauthorized()
    runner_id = runner.id
    job = db.session.get(TrainingJob, job_id)
    if job is None:
        return error_response(404, f"There is no job #{job_id}.")
    report = None
    try:
        limits = ReportLimits.from_config()
        report = parse_report(request.get_json(silent=True), limits)
        answer = receive_report(job, runner, report, limits)
        db.session.commit()
    except JobError as error:
        db.session.rollback()
        return error_response(error.status, str(error))
    except StaleDataError:
        db.session.rollback()
        return error_response(409, "Another report for this job arrived at the same moment; send this one again.")
    except IntegrityError:
        # The same report_id committed first in a concurrent request: answer as it was answered.
        db.session.rollback()
        earlier = applied_report(runner_id, report.report_id) if report and report.report_id else None
        if earlier is None or earlier.training_job_id != job_id:
            raise
        answer = earlier.response
    return jsonify(answer)
