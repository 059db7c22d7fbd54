"""The metering JSON API with ``Authorization: Bearer <service token>``: report usage, ask for an allowance.

Documented in docs/metering-api.md.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from webapp import jsonapi
from webapp.database import write_transaction
from webapp.errors import error_response
from webapp.inputs import INT32_MAX
from webapp.extensions import csrf
from webapp.metering.services import InvalidBatch, allowance_answer, parse_batch, record_usage, service_for_token

# A service token authenticates each request, so there is no CSRF cookie to protect.
api_bp = Blueprint("metering_api", __name__, url_prefix="/api/usage")
csrf.exempt(api_bp)


def unauthorized():
    return jsonapi.unauthorized("metering", "metering service token")


@api_bp.post("/events")
def usage_events():
    """Record a batch of usage events in one transaction; repeated ids are skipped, bad events refused with reasons."""
    if service_for_token(jsonapi.bearer_token()) is None:
        return unauthorized()
    try:
        events = parse_batch(request.get_json(silent=True), current_app.config["METERING_MAX_EVENTS_PER_BATCH"])
    except InvalidBatch as error:
        return error_response(error.status, str(error))
    # Under the write lock from its first read on SQLite (see write_transaction); on PostgreSQL the
    # unique event ids make concurrent batches with the same ids wait for each other instead.
    recorded = write_transaction(lambda: record_usage(events))
    return jsonify({
        "accepted": recorded.accepted, "duplicated": recorded.duplicated, "refused": len(recorded.refused),
        "refusals": [{"id": refusal.event_id, "reason": refusal.reason} for refusal in recorded.refused],
    })


@api_bp.get("/allowance")
def usage_allowance():
    """What ``user_id`` may still use this period, and whether each metric is blocked."""
    if service_for_token(jsonapi.bearer_token()) is None:
        return unauthorized()
    user_id = request.args.get("user_id", type=int)
    if user_id is None or not 1 <= user_id <= INT32_MAX:
        return error_response(422, "user_id must be a user id (a whole number from 1).")
    answer = allowance_answer(user_id)
    if answer is None:
        return error_response(404, f"There is no user #{user_id}.")
    return jsonify(answer)
