"""The minions quota under real concurrency: 10 simultaneous creates at a quota of 2 leave exactly 2.

Each request runs on its own thread, connection and transaction against a database
of its own (no test transaction to share), as under a threaded server.
"""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from tests.conftest import FreshContextClient, app_of_its_own
from tests.factories import make_ai_model, make_plan, make_session, make_subscription, make_user
from webapp.extensions import db
from webapp.minions.models import Minion

RACERS = 10
QUOTA = 2


@pytest.fixture(scope="module")
def race_app(backend, tmp_path_factory):
    with app_of_its_own(backend, tmp_path_factory.mktemp("race"), "_race") as app:
        yield app


def test_concurrent_creates_never_pass_the_quota(race_app, backend):
    with race_app.app_context():
        user = make_user()
        make_subscription(user, make_plan(quotas={"minions": QUOTA}))
        model_id = make_ai_model().id
        tokens = []
        for _ in range(RACERS):
            make_session(user)
            tokens.append(user.session_token)
        user_id = user.id
        db.session.commit()

    start = threading.Barrier(RACERS)
    outcomes: list[int | str] = [None] * RACERS

    def race(number: int) -> None:
        client = FreshContextClient(race_app, race_app.response_class, use_cookies=True)
        with client.session_transaction() as session:
            session["_user_id"] = tokens[number]
            session["_fresh"] = True
        start.wait()
        try:
            response = client.post("/minions", data={"name": f"Racer {number}", "model_id": model_id})
            outcomes[number] = response.status_code
        except Exception as error:  # the test app lets errors through: any is a failure
            outcomes[number] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=race, args=(number,)) for number in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    with race_app.app_context():
        created = db.session.scalar(select(func.count(Minion.id)).where(Minion.owner_user_id == user_id))
    assert all(outcome in (302, 422, 503) for outcome in outcomes), outcomes
    assert outcomes.count(302) == created
    if backend == "postgresql":
        # The owner's row lock queues the requests: exactly the quota's worth succeed, the rest are told why.
        assert created == QUOTA and outcomes.count(422) == RACERS - QUOTA
    else:
        # SQLite has one writer at a time: a request may also get a clean 503 (retry), never a third minion.
        assert 1 <= created <= QUOTA
