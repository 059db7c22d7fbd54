"""The metering API over HTTP: service tokens, the batch's answer, bad input and size limits, the allowance."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.factories import make_metering_token, make_plan, make_subscription, make_user
from webapp.billing.models import UsageRecord
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.models import MeteringToken

EVENTS = "/api/usage/events"


@pytest.fixture
def bearer(db_session):
    _, token = make_metering_token()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def ada(db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"tokens": 1_000, "requests": 3}))
    return user


def event(user, event_id: str, metric: str = "input_tokens", quantity: int = 100, at=None, **fields) -> dict:
    return {"id": event_id, "user_id": user.id, "model": 1, "metric": metric, "quantity": quantity,
            "occurred_at": (at or utcnow()).isoformat(), **fields}


@pytest.fixture
def model_id(db_session):
    from tests.factories import make_ai_model
    return make_ai_model().id


def test_a_batch_is_answered_with_accepted_duplicated_and_refused_counts(client, bearer, ada, model_id):
    batch = [event(ada, f"ev-{n}", model=model_id) for n in range(3)]
    batch.append(event(ada, "late", model=model_id, at=utcnow() - timedelta(days=40)))
    first = client.post(EVENTS, json={"events": batch}, headers=bearer)
    assert first.status_code == 200
    assert first.json["accepted"] == 3 and first.json["duplicated"] == 0 and first.json["refused"] == 1
    (refusal,) = first.json["refusals"]
    assert refusal["id"] == "late" and "before the user's open period" in refusal["reason"]
    again = client.post(EVENTS, json={"events": batch[:3]}, headers=bearer)
    assert (again.json["accepted"], again.json["duplicated"], again.json["refused"]) == (0, 3, 0)
    assert db.session.scalar(select(func.count(UsageRecord.id)).where(UsageRecord.user_id == ada.id)) == 3


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_without_a_valid_service_token_nothing_is_read_or_stored(client, ada, headers):
    response = client.post(EVENTS, json={"events": [event(ada, "x")]}, headers=headers)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="metering"'
    assert client.get(f"/api/usage/allowance?user_id={ada.id}", headers=headers).status_code == 401
    assert db.session.scalar(select(func.count(UsageRecord.id))) == 0


def test_a_deactivated_token_is_refused(client, bearer, ada):
    db.session.execute(MeteringToken.__table__.update().values(is_active=False))
    assert client.get(f"/api/usage/allowance?user_id={ada.id}", headers=bearer).status_code == 401


@pytest.mark.parametrize("body, detail", [
    ([], 'The body must be {"events": [...]}'),
    ({"events": [], "extra": 1}, 'The body must be {"events": [...]}'),
    ({"events": []}, "events must be a non-empty list."),
    ({"events": ["x"]}, "events[0] must be an object."),
    ({"events": [{"id": "a"}]}, "events[0] lacks user_id, model, metric, quantity, occurred_at."),
    ({"events": [{"id": "", "user_id": 1, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].id must be a non-blank string"),
    ({"events": [{"id": "a" * 65, "user_id": 1, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].id must be a non-blank string"),
    ({"events": [{"id": "a", "user_id": True, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].user_id must be a user id"),
    ({"events": [{"id": "a", "user_id": 1, "model": "gpt", "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].model must be a model id"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "training_minutes", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].metric must be one of"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": -1,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].quantity must be a whole number"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": 2**63,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].quantity must be a whole number"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": 1.5,
                  "occurred_at": "2026-12-01T00:00:00Z"}]}, "events[0].quantity must be a whole number"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00"}]}, "events[0].occurred_at must carry its UTC offset"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "yesterday"}]}, "events[0].occurred_at must be an ISO 8601 time"),
    ({"events": [{"id": "a", "user_id": 1, "model": 1, "metric": "requests", "quantity": 1,
                  "occurred_at": "2026-12-01T00:00:00Z", "cost": 3}]}, "events[0] has unknown fields: cost."),
])
def test_a_malformed_batch_is_refused_whole_with_the_field_named(client, bearer, ada, body, detail):
    response = client.post(EVENTS, json=body, headers=bearer)
    assert response.status_code == 422 and response.json["detail"].startswith(detail), response.json
    assert db.session.scalar(select(func.count(UsageRecord.id))) == 0


def test_one_bad_event_refuses_the_whole_batch(client, bearer, ada, model_id):
    batch = [event(ada, "good", model=model_id), event(ada, "bad", model=model_id, quantity="3")]
    assert client.post(EVENTS, json={"events": batch}, headers=bearer).status_code == 422
    assert db.session.scalar(select(func.count(UsageRecord.id))) == 0


def test_more_events_than_a_batch_holds_is_413(app, client, bearer, ada, model_id):
    limit = app.config["METERING_MAX_EVENTS_PER_BATCH"]
    batch = [event(ada, f"e{n}", model=model_id) for n in range(limit + 1)]
    response = client.post(EVENTS, json={"events": batch}, headers=bearer)
    assert response.status_code == 413 and f"at most {limit}" in response.json["detail"]


def test_a_full_batch_of_1000_is_accepted(client, bearer, ada, model_id):
    batch = [event(ada, f"full-{n}", quantity=1, model=model_id) for n in range(1000)]
    response = client.post(EVENTS, json={"events": batch}, headers=bearer)
    assert response.status_code == 200 and response.json["accepted"] == 1000


@pytest.mark.parametrize("raw, status", [
    ('{"events": [{"id": "a", "quantity": NaN}]}', 400),
    ('{"events": [{"id": "a\\u0000"}]}', 400),
    ("[" * 40 + "]" * 40, 400),
])
def test_json_the_console_does_not_read_is_400(client, bearer, raw, status):
    response = client.post(EVENTS, data=raw, headers={**bearer, "Content-Type": "application/json"})
    assert response.status_code == status


def test_a_body_over_the_size_limit_is_413(app, client, bearer):
    body = b'{"events": [' + b" " * app.config["MAX_CONTENT_LENGTH"] + b"]}"
    response = client.post(EVENTS, data=body, headers={**bearer, "Content-Type": "application/json"})
    assert response.status_code == 413


def test_the_allowance_moves_with_each_batch_and_blocks_at_the_limit(client, bearer, ada, model_id):
    url = f"/api/usage/allowance?user_id={ada.id}"
    before = client.get(url, headers=bearer).json
    assert before["quotas"]["requests"]["remaining"] == 3 and before["blocked"]["requests"] is False
    batch = [event(ada, f"r{n}", metric="requests", quantity=1, model=model_id) for n in range(3)]
    client.post(EVENTS, json={"events": batch}, headers=bearer)
    after = client.get(url, headers=bearer).json
    assert after["quotas"]["requests"] == {
        "metrics": ["requests"], "limit": 3, "used": 3, "remaining": 0, "at_limit": "block", "blocked": True,
        "overage_price": None}
    assert after["blocked"] == {"input_tokens": False, "output_tokens": False, "requests": True}


def test_the_allowance_is_read_in_a_constant_number_of_queries(client, bearer, ada, model_id, count_queries):
    url = f"/api/usage/allowance?user_id={ada.id}"
    with count_queries() as counter:
        client.get(url, headers=bearer)
    batch = [event(ada, f"q{n}", quantity=1, model=model_id) for n in range(500)]
    client.post(EVENTS, json={"events": batch}, headers=bearer)
    with count_queries() as again:
        client.get(url, headers=bearer)
    assert again.count == counter.count


@pytest.mark.parametrize("query, status", [("", 422), ("?user_id=abc", 422), ("?user_id=0", 422),
                                           ("?user_id=99999999999", 400), ("?user_id=2147483647", 404)])
def test_the_allowance_needs_an_existing_user_id(client, bearer, query, status):
    assert client.get(f"/api/usage/allowance{query}", headers=bearer).status_code == status


def test_create_token_prints_it_once_and_stores_only_its_hash(app, db_session):
    result = app.test_cli_runner().invoke(args=["metering", "create-token", "gateway-eu"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    stored = db.session.scalars(select(MeteringToken).where(MeteringToken.name == "gateway-eu")).one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    again = app.test_cli_runner().invoke(args=["metering", "create-token", "gateway-eu"])
    assert again.exit_code != 0 and "already exists" in again.output
