"""The runners' JSON API: POST /api/runner/jobs/<id>/report with ``Authorization: Bearer <token>``.

Documented in docs/runner-api.md.
"""
from __future__ import annotations

from flask import jsonify, request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.errors import error_response
from webapp.extensions import db
from webapp.training import api_bp
from webapp.training.models import TrainingJob
from webapp.training.services import (
    JobError, ReportLimits, applied_report, parse_report, receive_report, runner_for_token,
)


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@api_bp.post("/jobs/<int:job_id>/report")
def job_report(job_id: int):
    """Apply a runner's report to a job; any error leaves everything unchanged.

    The answer is built before the commit, so nothing that can fail runs after it.
    """
    runner = runner_for_token(bearer_token())
    if runner is None:
        response = error_response(401, "A valid runner token is required: Authorization: Bearer <token>.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="runner"'
        return response
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
