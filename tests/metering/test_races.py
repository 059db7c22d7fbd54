"""Concurrent batches with overlapping event ids, on a committed database behind a live server."""
from __future__ import annotations

import json
import urllib.request

import pytest
from sqlalchemy import func, select

from tests.concurrency import all_at_once
from tests.conftest import LiveServer, app_of_its_own
from tests.factories import make_ai_model, make_metering_token, make_plan, make_subscription, make_user
from webapp.billing.models import UsageRecord
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.services import rollup_mismatches
from webapp import quotas

SENDERS = 6
BATCH = 200


@pytest.fixture(scope="module")
def shared_app(backend, tmp_path_factory):
    with app_of_its_own(backend, tmp_path_factory.mktemp(f"metering-races-{backend}"), "_metering_races") as app:
        yield app


def send(url: str, token: str, events: list[dict]) -> dict:
    request = urllib.request.Request(f"{url}/api/usage/events", method="POST", data=json.dumps({"events": events}).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_concurrent_batches_with_overlapping_ids_store_each_event_once(shared_app):
    with shared_app.app_context():
        user = make_user()
        make_subscription(user, make_plan(quotas={"tokens": 10**9}))
        model_id = make_ai_model().id
        _, token = make_metering_token()
        db.session.commit()
        user_id = user.id
    now = utcnow().isoformat()
    # Sender k sends ids k*100 .. k*100+199: each id is in two senders' batches (the first and last half-batches in one).
    batches = [[{"id": f"race-{n}", "user_id": user_id, "model": model_id, "metric": "input_tokens",
                 "quantity": 1, "occurred_at": now} for n in range(k * 100, k * 100 + BATCH)] for k in range(SENDERS)]
    distinct = {event["id"] for batch in batches for event in batch}

    with LiveServer(shared_app) as server:
        results = all_at_once(SENDERS, lambda index: send(server.url, token, batches[index]))

    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    assert sum(result["accepted"] for result in results) == len(distinct)
    assert sum(result["duplicated"] for result in results) == SENDERS * BATCH - len(distinct)
    with shared_app.app_context():
        stored = db.session.scalar(select(func.count(UsageRecord.id)).where(UsageRecord.user_id == user_id))
        assert stored == len(distinct)
        user = db.session.get(type(user), user_id)
        assert quotas.used(user, "tokens", quotas.allowance(user)) == len(distinct)
        assert rollup_mismatches() == []
