"""The runners' JSON API: POST /api/runner/jobs/<id>/report with ``Authorization: Bearer <token>``.

Documented in docs/runner-api.md.
"""
from __future__ import annotations

from flask import jsonify, request
from sqlalchemy.orm.exc import StaleDataError

from webapp.errors import error_response
from webapp.extensions import db
from webapp.training import api_bp
from webapp.training.models import TrainingJob
from webapp.training.services import JobError, apply_report, parse_report, runner_for_token


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@api_bp.post("/jobs/<int:job_id>/report")
def job_report(job_id: int):
    """Apply a runner's report to a job; any error leaves everything unchanged."""
    runner = runner_for_token(bearer_token())
    if runner is None:
        response = error_response(401, "A valid runner token is required: Authorization: Bearer <token>.")
        response.headers["WWW-Authenticate"] = 'Bearer realm="runner"'
        return response
    job = db.session.get(TrainingJob, job_id)
    if job is None:
        return error_response(404, f"There is no job #{job_id}.")
    try:
        report = parse_report(request.get_json(silent=True))
        note = apply_report(job, runner, report)
        db.session.commit()
    except JobError as error:
        db.session.rollback()
        return error_response(error.status, str(error))
    except StaleDataError:
        db.session.rollback()
        return error_response(409, "Another report for this job arrived at the same moment; send this one again.")
    body = {"job": job.id, "status": job.status, "progress": job.progress,
            "output_model_version_id": job.output_model_version_id}
    if note:
        body["note"] = note
    return jsonify(body)
