"""Overage billed at roll-over: one line per metered quota used past its limit, on the renewal payment, once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from tests.billing.test_rules import payments_of
from tests.conftest import login
from tests.factories import make_plan, make_subscription, make_usage, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing import services
from webapp.db import utcnow

OVERAGE_PLAN = {"tokens": 1_000_000, "requests": 100, "training_minutes": 60,
                "overage": {"tokens": {"per": 1_000, "cents": 2}, "training_minutes": {"per": 1, "cents": 10}}}


def test_overage_appears_once_on_the_renewal_payment_after_two_runs(db_session):
    pro = make_plan("pro", 2900, name="Pro", quotas=OVERAGE_PLAN)
    user = make_user()
    start = utcnow() - timedelta(days=31)
    subscription = make_subscription(user, pro, current_period_start=start)
    make_usage(user, "input_tokens", 900_000, occurred_at=start + timedelta(days=3))
    make_usage(user, "output_tokens", 112_345, occurred_at=start + timedelta(days=20))  # 12,345 past the limit
    make_usage(user, "requests", 500, occurred_at=start + timedelta(days=20))  # blocks: never billed
    make_usage(user, "training_minutes", 60, occurred_at=start + timedelta(days=5))  # at the limit, not past it
    make_usage(user, "input_tokens", 5_000_000, occurred_at=start - timedelta(days=1))  # the period before

    assert services.roll_periods() == services.RollOverSummary(renewed=1)
    assert services.roll_periods() == services.RollOverSummary()

    [payment] = payments_of(db_session, subscription)
    # 12,345 tokens past the limit: 13 started thousands at 2 cents.
    assert payment.amount_cents == 2900 + 26
    assert [(line["amount_cents"], line.get("quota"), line.get("quantity")) for line in payment.lines] == [
        (2900, None, None), (26, "tokens", 12_345)]
    assert payment.lines[1]["description"].startswith("Tokens past the 1,000,000 limit")
    assert payment.lines[1]["description"].endswith("12,345 at $0.02 per 1,000")
    assert payment.description.endswith("with the overage of the period before")
    renewal = db_session.scalar(select(AuditEvent.changes).where(AuditEvent.action == "subscription.renew"))
    assert renewal["overage_cents"] == 26


def test_each_missed_period_bills_its_own_overage_once(db_session):
    pro = make_plan("pro", 2900, quotas=OVERAGE_PLAN)
    user = make_user()
    start = utcnow() - timedelta(days=65)  # periods ended 35 and 5 days ago
    subscription = make_subscription(user, pro, current_period_start=start)
    make_usage(user, "training_minutes", 61, occurred_at=start + timedelta(days=1))
    make_usage(user, "training_minutes", 75, occurred_at=start + timedelta(days=31))
    make_usage(user, "training_minutes", 500, occurred_at=utcnow() - timedelta(hours=1))  # the open period

    assert services.roll_periods() == services.RollOverSummary(renewed=2)
    services.roll_periods()

    payments = payments_of(db_session, subscription)
    assert [p.amount_cents for p in payments] == [2900 + 10, 2900 + 150]
    assert [p.lines[1]["quantity"] for p in payments] == [1, 15]


def test_without_overage_the_renewal_stays_one_amount_without_lines(db_session):
    pro = make_plan("pro", 2900, quotas=OVERAGE_PLAN)
    user = make_user()
    subscription = make_subscription(user, pro, current_period_start=utcnow() - timedelta(days=31))
    services.roll_periods()
    [payment] = payments_of(db_session, subscription)
    assert (payment.amount_cents, payment.lines) == (2900, [])


def test_a_free_plan_with_overage_is_billed_for_the_overage_alone(db_session):
    free = make_plan("free", 0, quotas={"tokens": 1_000, "overage": {"tokens": {"per": 100, "cents": 5}}})
    user = make_user()
    start = utcnow() - timedelta(days=31)
    subscription = make_subscription(user, free, current_period_start=start)
    make_usage(user, "input_tokens", 1_250, occurred_at=start + timedelta(days=1))
    services.roll_periods()
    [payment] = payments_of(db_session, subscription)
    assert payment.amount_cents == 15 and [line["amount_cents"] for line in payment.lines] == [0, 15]


def test_a_subscription_that_ends_is_billed_its_last_overage_once_and_audited(db_session):
    pro = make_plan("pro", 2900, name="Pro", quotas=OVERAGE_PLAN)
    user = make_user()
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    subscription = make_subscription(user, pro, current_period_start=start, cancel_at_period_end=True)
    make_usage(user, "input_tokens", 1_001_000, occurred_at=start + timedelta(days=1))
    after_the_end = datetime(2026, 4, 1, tzinfo=timezone.utc)
    assert services.roll_periods(after_the_end) == services.RollOverSummary(ended=1)
    services.roll_periods(after_the_end)
    [payment] = payments_of(db_session, subscription)
    assert payment.amount_cents == 2 and payment.lines[0]["quota"] == "tokens"
    assert payment.description == "Pro plan, overage of the last period to 31 Mar 2026"
    assert payment.idempotency_key == f"overage-{subscription.id}-20260331T000000"
    [end] = db_session.scalars(select(AuditEvent).where(AuditEvent.object_type == "user_subscriptions",
                                                        AuditEvent.object_id == subscription.id))
    assert (end.action, end.actor_id, end.changes) == ("subscription.end", None, {"status": ["active", "canceled"]})


def test_a_renewal_is_described_keyed_and_audited_by_its_period_and_a_trial_becomes_active(db_session):
    pro = make_plan("pro", 2900, name="Pro", quotas=OVERAGE_PLAN, currency="EUR")
    free = make_plan("free", 0, name="Free")
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    metered, plain, gratis = make_user(), make_user(), make_user()
    with_overage = make_subscription(metered, pro, status="trialing", current_period_start=start)
    without = make_subscription(plain, pro, current_period_start=start)
    unpaid = make_subscription(gratis, free, current_period_start=start)
    make_usage(metered, "input_tokens", 1_001_000, occurred_at=start + timedelta(days=1))

    assert services.roll_periods(datetime(2026, 4, 1, tzinfo=timezone.utc)) == services.RollOverSummary(renewed=3)

    assert with_overage.status == "active"
    assert (with_overage.current_period_start, with_overage.current_period_end) == (
        datetime(2026, 3, 31, tzinfo=timezone.utc), datetime(2026, 4, 30, tzinfo=timezone.utc))
    [billed] = payments_of(db_session, with_overage)
    assert billed.description == "Pro plan, period from 31 Mar 2026, with the overage of the period before"
    assert billed.lines == [
        {"description": "Pro plan, 31 Mar 2026 – 30 Apr 2026", "amount_cents": 2900},
        {"description": "Tokens past the 1,000,000 limit, 1 Mar 2026 – 31 Mar 2026: 1,000 at €0.02 per 1,000",
         "amount_cents": 2, "quota": "tokens", "quantity": 1_000},
    ]
    assert billed.idempotency_key == f"renewal-{with_overage.id}-20260331T000000"
    [plain_payment] = payments_of(db_session, without)
    assert (plain_payment.description, plain_payment.amount_cents) == ("Pro plan, period from 31 Mar 2026", 2900)
    assert payments_of(db_session, unpaid) == []
    renewals = {event.object_id: (event.actor_id, event.changes) for event in db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == "subscription.renew"))}
    period_start = "2026-03-31T00:00:00+00:00"
    assert renewals == {
        with_overage.id: (None, {"period_start": period_start, "plan": "pro", "payment": billed.provider_ref,
                                 "overage_cents": 2}),
        without.id: (None, {"period_start": period_start, "plan": "pro", "payment": plain_payment.provider_ref}),
        unpaid.id: (None, {"period_start": period_start, "plan": "free", "payment": None}),
    }


def test_a_downgraded_period_is_billed_at_the_plan_it_ran_on(db_session):
    team = make_plan("team", 9900, quotas={"tokens": 10, "overage": {"tokens": {"per": 1, "cents": 1}}})
    pro = make_plan("pro", 2900, quotas={"tokens": 10})
    user = make_user()
    start = utcnow() - timedelta(days=31)
    subscription = make_subscription(user, team, current_period_start=start, pending_plan_id=pro.id)
    make_usage(user, "input_tokens", 15, occurred_at=start + timedelta(days=1))
    services.roll_periods()
    [payment] = payments_of(db_session, subscription)
    assert payment.amount_cents == 2900 + 5 and payment.lines[0]["description"].startswith("Pro plan")


def test_the_payment_history_lists_the_lines(client, db_session):
    pro = make_plan("pro", 2900, name="Pro", quotas=OVERAGE_PLAN)
    user = make_user()
    start = utcnow() - timedelta(days=31)
    make_subscription(user, pro, current_period_start=start)
    make_usage(user, "input_tokens", 1_002_000, occurred_at=start + timedelta(days=1))
    services.roll_periods()
    db_session.commit()
    login(client, user)
    body = client.get("/account/subscription/payments").get_data(as_text=True)
    assert "Tokens past the 1,000,000 limit" in body and "$0.04" in body and "$29.04" in body
