"""Billing rules with their expected amounts written out: roll-over across missed periods, trials, equal prices."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.billing.test_services import audit_actions
from tests.factories import make_plan, make_subscription, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing import services
from webapp.billing.models import Payment
from webapp.db import utcnow


def payments_of(db_session, subscription) -> list[Payment]:
    return list(db_session.scalars(
        select(Payment).where(Payment.subscription_id == subscription.id).order_by(Payment.id)
    ))


def test_roll_over_catches_up_every_missed_period_with_one_renewal_and_one_payment_each(db_session):
    pro = make_plan("pro", 2900)
    user = make_user()
    start = utcnow() - timedelta(days=95)  # periods ended 65, 35 and 5 days ago; the fourth is running
    subscription = make_subscription(user, pro, current_period_start=start)

    summary = services.roll_periods()

    assert (summary.renewed, summary.downgraded, summary.ended) == (3, 0, 0)
    assert subscription.current_period_start == start + timedelta(days=90)
    assert subscription.current_period_end == start + timedelta(days=120)
    payments = payments_of(db_session, subscription)
    assert [(p.amount_cents, p.status) for p in payments] == [(2900, "pending")] * 3
    assert len({p.idempotency_key for p in payments}) == 3, "each period is keyed on its own"
    assert [p.idempotency_key for p in payments] == [
        f"renewal-{subscription.id}-{start + timedelta(days=days):%Y%m%dT%H%M%S}" for days in (30, 60, 90)
    ]
    renewals = db_session.scalars(select(AuditEvent.changes).where(
        AuditEvent.action == "subscription.renew", AuditEvent.object_id == subscription.id).order_by(AuditEvent.id))
    assert [changes["payment"] for changes in renewals] == [p.provider_ref for p in payments]

    events_before = db_session.scalar(select(func.count(AuditEvent.id)))
    assert services.roll_periods() == services.RollOverSummary(), "running it again changes nothing"
    assert len(payments_of(db_session, subscription)) == 3
    assert db_session.scalar(select(func.count(AuditEvent.id))) == events_before
    assert subscription.current_period_start == start + timedelta(days=90)


def test_a_trial_becomes_active_on_renewal_and_is_billed_for_the_new_period(db_session):
    pro = make_plan("pro", 2900)
    user = make_user()
    start = utcnow() - timedelta(days=31)
    trial = make_subscription(user, pro, status="trialing", current_period_start=start)

    assert services.roll_periods() == services.RollOverSummary(renewed=1)

    assert trial.status == "active" and trial.current_period_start == start + timedelta(days=30)
    assert [(p.amount_cents, p.status) for p in payments_of(db_session, trial)] == [(2900, "pending")]
    assert user.current_subscription_id == trial.id
    assert services.roll_periods() == services.RollOverSummary()
    assert trial.status == "active" and len(payments_of(db_session, trial)) == 1


def test_a_downgrade_due_in_a_missed_period_applies_once_then_renews_at_the_lower_price(db_session):
    team, pro = make_plan("team", 9900), make_plan("pro", 2900)
    user = make_user()
    start = utcnow() - timedelta(days=65)
    subscription = make_subscription(user, team, current_period_start=start, pending_plan_id=pro.id)

    assert services.roll_periods() == services.RollOverSummary(renewed=2, downgraded=1)

    assert (subscription.plan_id, subscription.pending_plan_id) == (pro.id, None)
    assert [p.amount_cents for p in payments_of(db_session, subscription)] == [2900, 2900]
    assert audit_actions(subscription) == ["subscription.downgrade_applied", "subscription.renew",
                                           "subscription.renew"]


def test_a_plan_of_the_same_price_applies_at_once_and_charges_nothing(db_session):
    pro, studio = make_plan("pro", 2900, sort_order=1), make_plan("studio", 2900, sort_order=2)
    user = make_user()
    subscription = make_subscription(user, pro, days_into_period=10)
    now = subscription.current_period_start + timedelta(days=10)

    quote = services.quote_plan_change(user, studio, now)
    assert (quote.kind, quote.amount_cents, quote.effective_at) == ("upgrade", 0, now)

    result = services.change_plan(user, studio, actor=user, expected_amount_cents=0, now=now)

    assert result.payment is None and result.message == "You are now on the Studio plan."
    assert (subscription.plan_id, subscription.pending_plan_id) == (studio.id, None)
    assert payments_of(db_session, subscription) == []
    change = db_session.scalar(select(AuditEvent.changes).where(AuditEvent.action == "subscription.upgrade"))
    assert change == {"plan": ["pro", "studio"], "amount_cents": 0}
    # And back again: the same price either way, so the move back is also immediate and free.
    back = services.quote_plan_change(user, pro, now)
    assert (back.kind, back.amount_cents) == ("upgrade", 0)
