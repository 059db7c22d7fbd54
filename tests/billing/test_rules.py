"""Billing rules with their expected amounts written out: roll-over across missed periods, trials, equal prices."""
from __future__ import annotations

from datetime import timedelta

import pytest
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
    renewals = db_session.scalars(select(AuditEvent).where(
        AuditEvent.action == "subscription.renew", AuditEvent.object_id == subscription.id).order_by(AuditEvent.id))
    assert [(event.actor_id, event.changes) for event in renewals] == [
        (None, {"period_start": (start + timedelta(days=days)).isoformat(), "plan": "pro", "payment": p.provider_ref})
        for days, p in zip((30, 60, 90), payments)
    ]

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


def test_money_and_counts_are_written_as_people_read_them():
    assert services.money(123456) == "$1,234.56"
    assert services.money(5, "EUR") == "€0.05" and services.money(990, "GBP") == "£9.90"
    assert services.money(100, "JPY") == "JPY 1.00"
    assert services.count_text(1234567) == "1,234,567"


def test_meters_round_to_whole_percent_and_cap_at_a_hundred():
    def meter(used: int, limit: int):
        return services.Meter("tokens", "Tokens", used, limit)

    assert (meter(50, 200).percent, meter(1, 3).percent, meter(2, 3).percent) == (25, 33, 67)
    assert meter(300, 200).percent == 100 and meter(0, 0).percent == 100
    assert not meter(200, 200).over and meter(201, 200).over


def test_starting_quotes_the_full_price_and_runs_one_period_of_the_plans_interval(db_session):
    monthly, yearly = make_plan("pro", 2900), make_plan("pro-year", 29000, billing_interval="year")
    month_user, year_user = make_user(), make_user()
    now = utcnow()
    assert services.quote_plan_change(month_user, monthly, now) == services.Quote("start", monthly, 2900, now)
    services.change_plan(month_user, monthly, now=now, reference="  PO-9  ")
    services.change_plan(year_user, yearly, now=now)
    month, year = services.live_subscription(month_user), services.live_subscription(year_user)
    assert (month.current_period_start, month.current_period_end) == (now, now + timedelta(days=30))
    assert year.current_period_end == now + timedelta(days=365)
    (payment,) = payments_of(db_session, month)
    assert payment.description == "Pro plan, first period (ref. PO-9)"


def test_a_reference_of_sixty_characters_is_taken_and_one_more_is_refused(db_session):
    pro, team = make_plan("pro", 2900), make_plan("team", 9900)
    user = make_user()
    subscription = make_subscription(user, pro)
    now = subscription.current_period_start + timedelta(days=15)  # half the period: half the $70 difference
    result = services.change_plan(user, team, reference="R" * 60, now=now)
    assert result.payment.amount_cents == 3500
    assert result.payment.description == f"Upgrade from Pro to Team, prorated (ref. {'R' * 60})"
    other = make_user()
    make_subscription(other, pro)
    with pytest.raises(services.PlanChangeError, match="^The invoice reference can be at most 60 characters.$"):
        services.change_plan(other, team, reference="R" * 61)


def test_a_downgrade_is_quoted_free_from_the_period_end(db_session):
    pro, team = make_plan("pro", 2900), make_plan("team", 9900)
    user = make_user()
    subscription = make_subscription(user, team)
    quote = services.quote_plan_change(user, pro)
    assert (quote.kind, quote.amount_cents, quote.effective_at) == ("downgrade", 0, subscription.current_period_end)


def test_cancel_records_when_and_resume_refuses_after_the_period_end(db_session):
    pro = make_plan("pro", 2900)
    user = make_user()
    subscription = make_subscription(user, pro)
    when = utcnow() - timedelta(minutes=5)
    services.cancel_subscription(user, now=when)
    assert subscription.canceled_at == when
    with pytest.raises(services.PlanChangeError, match="already ended"):
        services.resume_subscription(user, now=subscription.current_period_end)
    assert subscription.cancel_at_period_end


def test_an_invoice_description_is_cut_to_its_column(db_session):
    long_a, long_b = make_plan("a", 100, name="A" * 120), make_plan("b", 200, name="B" * 120)
    user = make_user()
    subscription = make_subscription(user, long_a)
    result = services.change_plan(user, long_b, reference="R" * 60,
                                  now=subscription.current_period_start + timedelta(days=15))
    expected = f"Upgrade from {'A' * 120} to {'B' * 120}, prorated (ref. {'R' * 60})"[:255]
    assert result.payment.description == expected and len(expected) == 255


def test_one_run_rolls_every_due_subscription_and_a_period_ending_at_that_moment_is_due(db_session, count_queries):
    team, pro, basic = make_plan("team", 9900), make_plan("pro", 2900), make_plan("basic", 900)
    now = utcnow()
    ending_now = now - timedelta(days=30)  # its period ends exactly at ``now``: due
    leaving = [make_subscription(make_user(), basic, current_period_start=ending_now, cancel_at_period_end=True)
               for _ in range(2)]
    moving_down = [make_subscription(make_user(), team, current_period_start=ending_now, pending_plan_id=pro.id)
                   for _ in range(2)]
    not_yet = make_subscription(make_user(), pro, current_period_start=ending_now + timedelta(microseconds=1))
    ids = [subscription.id for subscription in [*leaving, *moving_down, not_yet]]
    db_session.expunge_all()

    with count_queries() as counter:
        assert services.roll_periods(now) == services.RollOverSummary(renewed=2, downgraded=2, ended=2)
    reads = [statement for statement in counter.statements if statement.startswith("SELECT")]
    assert len(reads) == 1, "the due subscriptions come with their plans, pending plans and users in one read"
    rolled = [db_session.get(services.UserSubscription, subscription_id) for subscription_id in ids]
    assert [subscription.status for subscription in rolled] == ["canceled", "canceled", "active", "active", "active"]
    assert rolled[-1].current_period_end == now + timedelta(microseconds=1), "not due until after its end"
    assert [tuple(row) for row in db_session.execute(
        select(AuditEvent.object_id, AuditEvent.actor_id, AuditEvent.changes)
        .where(AuditEvent.action == "subscription.downgrade_applied").order_by(AuditEvent.object_id))] == [
        (ids[2], None, {"plan": ["team", "pro"]}), (ids[3], None, {"plan": ["team", "pro"]})]
