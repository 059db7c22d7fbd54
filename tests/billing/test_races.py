"""Saved changes are never reported lost, races end in a clear answer, and amounts are confirmed exactly.

The concurrency tests use their own database with committed rows (the per-test rolled-back
transaction would serialise everything on one connection) and real threads.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from tests.concurrency import all_at_once
from tests.conftest import login
from tests.factories import make_plan, make_subscription, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing import gateway as gateway_module
from webapp.billing import services
from webapp.billing.models import Payment, UserSubscription
from webapp.db import utcnow
from webapp.extensions import db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def plans(db_session):
    return {"free": make_plan("free", 0, sort_order=0), "pro": make_plan("pro", 2900, sort_order=1),
            "team": make_plan("team", 9900, sort_order=2)}


def payments_of(user) -> int:
    return db.session.scalar(select(func.count(Payment.id)).where(Payment.user_id == user.id))


# --- the commit is the last thing that can fail ------------------------------------------------


@pytest.fixture
def database_fails_after_commit(app, db_session, monkeypatch):
    """Once armed, every statement after the next commit fails as if the database had gone away."""
    failing = {"armed": False, "on": False}
    commit = db.session.commit

    def commit_then_fail():
        commit()
        failing["on"] = failing["armed"]

    def unreachable(*_args):
        if failing["on"]:
            raise OperationalError("SELECT", {}, ConnectionResetError("server closed the connection"))

    monkeypatch.setattr(db.session, "commit", commit_then_fail)
    connection = db._app_engines[app][None]
    sa.event.listen(connection, "before_cursor_execute", unreachable)
    yield failing
    sa.event.remove(connection, "before_cursor_execute", unreachable)


@pytest.mark.parametrize("url, data, saved", [
    ("/account/subscription/cancel", {}, "Your subscription ends on"),
    ("/account/subscription/change", {"plan": "free", "expected_amount_cents": "0"}, "You move to the Free plan"),
])
def test_a_change_that_committed_is_answered_as_saved_even_if_the_database_fails_right_after(
        client, plans, db_session, database_fails_after_commit, url, data, saved):
    user = make_user()
    subscription = make_subscription(user, plans["pro"])
    login(client, user)
    database_fails_after_commit["armed"] = True
    response = client.post(url, data=data, headers=HTMX)
    assert database_fails_after_commit["on"], "the failure was injected after the commit"
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and saved in html and "nothing was saved" not in html
    database_fails_after_commit.update(armed=False, on=False)
    db_session.expire_all()
    assert subscription.cancel_at_period_end or subscription.pending_plan_id == plans["free"].id


# --- confirmed amounts ---------------------------------------------------------------------


@pytest.mark.parametrize("confirmed", ["12abc", "", None, "-1", " 0", "1e3", "0x10", "٣", "9" * 40, "4667.0"])
def test_an_upgrade_without_an_exact_integer_confirmation_is_refused_and_nothing_charged(
        client, plans, db_session, confirmed):
    user = make_user()
    subscription = make_subscription(user, plans["pro"])
    login(client, user)
    data = {"plan": "team"} if confirmed is None else {"plan": "team", "expected_amount_cents": confirmed}
    response = client.post("/account/subscription/change", data=data, headers=HTMX)
    assert response.status_code == 422 and "amount to pay was not confirmed" in response.get_data(as_text=True)
    db_session.expire_all()
    assert subscription.plan_id == plans["pro"].id and payments_of(user) == 0


def test_an_upgrade_confirming_another_amount_is_refused(client, plans, db_session):
    user = make_user()
    subscription = make_subscription(user, plans["pro"])
    login(client, user)
    response = client.post("/account/subscription/change", headers=HTMX,
                           data={"plan": "team", "expected_amount_cents": "12"})
    assert response.status_code == 422 and "The amount due is now" in response.get_data(as_text=True)
    db_session.expire_all()
    assert subscription.plan_id == plans["pro"].id and payments_of(user) == 0


# --- races -----------------------------------------------------------------------------------


def test_a_start_that_loses_the_race_to_another_start_gets_a_422(client, plans, db_session, monkeypatch):
    """The quote saw no subscription, but another request started one meanwhile: the index refuses."""
    user = make_user()
    make_subscription(user, plans["free"])
    login(client, user)
    monkeypatch.setattr(services, "live_subscription", lambda _user: None)
    response = client.post("/account/subscription/change", headers=HTMX,
                           data={"plan": "pro", "expected_amount_cents": "2900"})
    assert response.status_code == 422 and "changed at the same moment" in response.get_data(as_text=True)
    monkeypatch.undo()
    db_session.expire_all()
    assert db_session.scalar(select(func.count(UserSubscription.id))
                             .where(UserSubscription.user_id == user.id)) == 1 and payments_of(user) == 0


@pytest.mark.postgres_only
def test_twenty_concurrent_starts_give_one_subscription_and_clear_refusals(race_app):
    with race_app.app_context():
        make_plan("pro", 2900)
        email = make_user().email
        db.session.commit()
    signed_in = race_app.test_client()
    assert login(signed_in, email).status_code == 302
    cookie = signed_in.get_cookie("session").value

    def start(_index: int) -> int:
        client = race_app.test_client()
        client.set_cookie("session", cookie)
        return client.post("/account/subscription/change", headers=HTMX,
                           data={"plan": "pro", "expected_amount_cents": "2900"}).status_code

    statuses = all_at_once(20, start)
    assert sorted(statuses) == [200] + [422] * 19, statuses
    with race_app.app_context():
        assert db.session.scalar(select(func.count(UserSubscription.id))) == 1
        assert db.session.scalar(select(func.count(Payment.id))) == 1


class SlowGateway(gateway_module.ManualInvoiceGateway):
    """Takes a moment per payment, so two runs surely overlap."""

    def collect(self, payment):
        time.sleep(0.2)
        return super().collect(payment)


def test_overlapping_roll_period_runs_each_roll_a_subscription_once_and_both_exit_0(race_app, monkeypatch):
    with race_app.app_context():
        plan = make_plan("pro", 2900)
        ids = [make_subscription(make_user(), plan, current_period_start=utcnow() - timedelta(days=31)).id
               for _ in range(4)]
        db.session.commit()
    monkeypatch.setattr(services, "default_gateway", SlowGateway)

    def run(_index: int):
        return race_app.test_cli_runner().invoke(args=["billing", "roll-periods"])

    results = all_at_once(2, run)
    # (Click's runner swaps sys.stdout per invoke, so the two outputs may interleave: counts come from the rows.)
    assert [result.exit_code for result in results] == [0, 0], [result.output for result in results]
    with race_app.app_context():
        assert db.session.scalar(select(func.count(Payment.id))) == len(ids), "one renewal each"
        assert db.session.scalar(select(func.count(AuditEvent.id))
                                 .where(AuditEvent.action == "subscription.renew")) == len(ids)
        assert db.session.scalar(select(func.min(UserSubscription.current_period_end))) > utcnow()


@pytest.mark.postgres_only
def test_a_run_skips_a_due_subscription_another_run_holds_instead_of_waiting_for_it(race_app):
    due = utcnow() - timedelta(days=31)
    with race_app.app_context():
        plan = make_plan("pro", 2900)
        held_id, free_id = (make_subscription(make_user(), plan, current_period_start=due).id for _ in range(2))
        db.session.commit()
        with db.engine.connect() as other_run:
            other_run.execute(sa.text("SELECT id FROM user_subscriptions WHERE id = :id FOR UPDATE"), {"id": held_id})
            # Waiting for the held row would end in this timeout's error instead of a summary.
            db.session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            assert services.roll_periods() == services.RollOverSummary(renewed=1)
            db.session.commit()
            other_run.rollback()
        periods = dict(db.session.execute(select(UserSubscription.id, UserSubscription.current_period_start)).all())
        assert periods == {held_id: due, free_id: due + timedelta(days=30)}
