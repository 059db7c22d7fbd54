"""Subscription rules without HTTP: proration, state changes, refusals that change nothing, roll-over."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from tests.factories import (
    make_minion, make_payment, make_plan, make_subscription, make_training_job, make_usage, make_user,
)
from webapp.accounts.models import AuditEvent, User
from webapp.billing import services
from webapp.billing.gateway import ManualInvoiceGateway
from webapp.billing.models import BillingCustomer, Payment, UsageRecord, UserSubscription
from webapp.billing.services import PlanChangeError
from webapp.db import utcnow


@pytest.fixture
def plans(db_session):
    return {
        "free": make_plan("free", 0, sort_order=0),
        "pro": make_plan("pro", 2900, sort_order=1),
        "team": make_plan("team", 9900, sort_order=2),
        "secret": make_plan("secret", 49900, is_public=False),
    }


@pytest.fixture
def ada(db_session):
    return make_user()


def audit_events(subscription) -> list[AuditEvent]:
    return list(services.db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "user_subscriptions",
                                 AuditEvent.object_id == subscription.id).order_by(AuditEvent.id)
    ))


def audit_actions(subscription) -> list[str]:
    return [event.action for event in audit_events(subscription)]


def snapshot(user) -> tuple:
    """Every billing row of ``user`` as plain values, to prove a refusal changed nothing."""
    from webapp.extensions import db

    db.session.expire_all()
    subscriptions = db.session.execute(
        select(UserSubscription.id, UserSubscription.plan_id, UserSubscription.status,
               UserSubscription.pending_plan_id, UserSubscription.cancel_at_period_end,
               UserSubscription.current_period_end, UserSubscription.lock_version)
        .where(UserSubscription.user_id == user.id).order_by(UserSubscription.id)
    ).all()
    payments = db.session.scalar(select(func.count(Payment.id)).where(Payment.user_id == user.id))
    events = db.session.scalar(select(func.count(AuditEvent.id)))
    return subscriptions, payments, events


def test_proration_charges_the_price_difference_for_the_rest_of_the_period(plans, ada):
    subscription = make_subscription(ada, plans["pro"], days_into_period=10)
    now = subscription.current_period_start + timedelta(days=10)
    # 20 of 30 days left of a $70 difference: $46.666... rounds half up to $46.67.
    assert services.prorated_amount(subscription, plans["team"], now) == 4667
    assert services.prorated_amount(subscription, plans["team"], subscription.current_period_start) == 7000
    assert services.prorated_amount(subscription, plans["team"], subscription.current_period_end) == 0
    assert services.prorated_amount(subscription, plans["free"], now) == 0, "never negative"


def test_a_stripe_proration_date_is_accepted_from_half_an_hour_ago_to_a_minute_ahead_inclusive():
    now = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    oldest, newest = 1777635000, 1777636860  # 11:30:00 and 12:01:00 that day
    assert services.confirmed_proration_date(oldest, now) == oldest
    assert services.confirmed_proration_date(newest, now) == newest
    for outside in (oldest - 1, newest + 1):
        with pytest.raises(PlanChangeError, match=r"^The amount shown has expired; open the plan again to see the amount due now\.$"):
            services.confirmed_proration_date(outside, now)
    assert services.confirmed_proration_date(None, now) == 1777636800


def test_upgrade_applies_at_once_and_bills_the_prorated_amount_as_a_pending_invoice(plans, ada):
    subscription = make_subscription(ada, plans["pro"], pending_plan_id=plans["free"].id)
    now = subscription.current_period_start + timedelta(days=10)
    quote = services.quote_plan_change(ada, plans["team"], now)
    assert (quote.kind, quote.amount_cents) == ("upgrade", 4667)

    result = services.change_plan(ada, plans["team"], actor=ada, expected_amount_cents=4667,
                                  reference="PO-77", now=now)

    assert subscription.plan_id == plans["team"].id and subscription.pending_plan_id is None
    payment = result.payment
    assert (payment.amount_cents, payment.status, payment.provider) == (4667, "pending", "manual_invoice")
    assert payment.provider_ref.startswith("INV-") and payment.idempotency_key
    assert payment.description == "Upgrade from Pro to Team, prorated (ref. PO-77)"
    assert result.message == f"You are now on the Team plan. Invoice {payment.provider_ref} for $46.67 is pending."
    (upgrade,) = audit_events(subscription)
    assert (upgrade.action, upgrade.actor_id, upgrade.changes) == ("subscription.upgrade", ada.id, {
        "plan": ["pro", "team"], "amount_cents": 4667, "pending_plan": ["free", None],
        "payment": payment.provider_ref})


def test_an_upgrade_at_no_cost_is_audited_without_an_invoice(plans, ada, db_session):
    subscription = make_subscription(ada, plans["pro"])
    twin = make_plan("twin", 2900)
    result = services.change_plan(ada, twin, actor=ada, expected_amount_cents=0)
    assert (result.message, result.payment, subscription.plan_id) == ("You are now on the Twin plan.", None, twin.id)
    assert db_session.scalar(select(func.count(Payment.id))) == 0
    assert [event.changes for event in audit_events(subscription)] == [{"plan": ["pro", "twin"], "amount_cents": 0}]


def test_an_upgrade_is_quoted_at_the_moment_given_and_refused_in_the_plans_currency_at_another_amount(ada):
    basic, plus = make_plan("basic", 2900, currency="EUR"), make_plan("plus", 9900, currency="EUR")
    subscription = make_subscription(ada, basic, days_into_period=20)
    ten_days_in = subscription.current_period_start + timedelta(days=10)
    before = snapshot(ada)
    with pytest.raises(PlanChangeError) as refusal:
        services.change_plan(ada, plus, expected_amount_cents=1, now=ten_days_in)
    assert str(refusal.value) == \
        "The amount due is now €46.67, not €0.01; open the plan again to confirm the new amount."
    assert snapshot(ada) == before


def test_an_invoice_reference_is_trimmed_and_may_have_60_characters(plans, ada):
    make_subscription(ada, plans["pro"])
    reference = "R" * 60
    result = services.change_plan(ada, plans["team"], reference=f"  {reference} ")
    assert result.payment.description.endswith(f", prorated (ref. {reference})")
    with pytest.raises(PlanChangeError) as refusal:
        services.change_plan(make_user(), plans["team"], reference=reference + "R")
    assert str(refusal.value) == "The invoice reference can be at most 60 characters."


def test_confirmed_amount_must_match_the_amount_due(plans, ada):
    subscription = make_subscription(ada, plans["pro"])
    before = snapshot(ada)
    with pytest.raises(PlanChangeError, match="amount due is now"):
        services.change_plan(ada, plans["team"], expected_amount_cents=1,
                             now=subscription.current_period_start + timedelta(days=10))
    assert snapshot(ada) == before


def test_downgrade_waits_for_the_period_end_and_can_be_called_off(plans, ada):
    subscription = make_subscription(ada, plans["team"])
    result = services.change_plan(ada, plans["pro"], actor=ada)
    assert (subscription.plan_id, subscription.pending_plan_id) == (plans["team"].id, plans["pro"].id)
    assert result == services.ChangeResult(
        f"You move to the Pro plan on {services.day_text(subscription.current_period_end)}.")
    (scheduled,) = audit_events(subscription)
    assert (scheduled.actor_id, scheduled.changes) == (ada.id, {
        "pending_plan": [None, "pro"], "effective_at": subscription.current_period_end.isoformat()})

    assert services.call_off_downgrade(ada, actor=ada) == services.ChangeResult("You stay on the Team plan.")
    assert subscription.pending_plan_id is None
    called_off = audit_events(subscription)[1]
    assert (called_off.action, called_off.actor_id, called_off.changes) == (
        "subscription.downgrade_called_off", ada.id, {"pending_plan": ["pro", None]})


def test_cancel_sets_cancel_at_period_end_and_resume_undoes_it(plans, ada):
    subscription = make_subscription(ada, plans["team"], pending_plan_id=plans["pro"].id)
    end = services.day_text(subscription.current_period_end)
    now = subscription.current_period_start + timedelta(days=3)
    assert services.cancel_subscription(ada, actor=ada, now=now) == services.ChangeResult(
        f"Your subscription ends on {end}.")
    assert subscription.cancel_at_period_end and subscription.canceled_at == now
    assert subscription.pending_plan_id is None, "nothing follows a cancelled subscription"
    assert subscription.status == "active", "it keeps working until the period ends"

    with pytest.raises(PlanChangeError, match="already ended"):
        services.resume_subscription(ada, now=subscription.current_period_end)
    assert services.resume_subscription(ada, actor=ada) == services.ChangeResult(f"Your subscription renews on {end}.")
    assert not subscription.cancel_at_period_end and subscription.canceled_at is None
    assert [(event.action, event.actor_id, event.changes) for event in audit_events(subscription)] == [
        ("subscription.cancel", ada.id, {"cancel_at_period_end": [False, True], "pending_plan": ["pro", None]}),
        ("subscription.resume", ada.id, {"cancel_at_period_end": [True, False]}),
    ]


def test_a_user_without_a_subscription_can_start_a_free_or_a_paid_one(plans, ada, db_session):
    free = services.change_plan(ada, plans["free"])
    assert free.payment is None
    subscription = services.live_subscription(ada)
    assert subscription.plan_id == plans["free"].id and ada.current_subscription_id == subscription.id

    other = make_user()
    paid = services.change_plan(other, plans["pro"])
    assert (paid.payment.amount_cents, paid.payment.status) == (2900, "pending")
    assert paid.payment.description == "Pro plan, first period", "no reference given, none printed"
    assert services.live_subscription(other).status == "active"


def test_a_start_is_audited_with_its_plan_and_invoice_and_its_message_names_the_amount_due(ada, db_session):
    plan = make_plan("plus", 3500, currency="EUR")
    result = services.change_plan(ada, plan, actor=ada, reference="PO-9")
    payment = result.payment
    assert result.message == \
        f"Your Plus subscription has started. Invoice {payment.provider_ref} for €35.00 is pending."
    assert payment.description == "Plus plan, first period (ref. PO-9)"
    other = make_user()
    free = services.change_plan(other, make_plan("gratis", 0), actor=other)
    assert free.message == "Your Gratis subscription has started."
    starts = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "subscription.start")
                                .order_by(AuditEvent.id))
    assert [(event.object_id, event.actor_id, event.changes) for event in starts] == [
        (services.live_subscription(ada).id, ada.id, {"plan": "plus", "payment": payment.provider_ref}),
        (services.live_subscription(other).id, other.id, {"plan": "gratis", "payment": None}),
    ]


@pytest.mark.parametrize("case, message", [
    ("current plan", "You are already on the Team plan."),
    ("not public", "The Secret plan is not offered for self-service; contact sales to join it."),
    ("resume expired", "That subscription has already ended and cannot be resumed; choose a plan to start again."),
    ("resume not cancelling", "Your subscription is not set to end, so there is nothing to resume."),
    ("second downgrade", "A move to the Pro plan is already scheduled; call it off first."),
    ("change while cancelling", "Your subscription is set to end on {end}; resume it before changing plan."),
    ("yearly", "Switching between monthly and yearly billing is not available yet."),
    ("call off nothing", "No plan change is scheduled."),
    ("cancel twice", "Your subscription is already set to end on {end}."),
    ("no subscription", "There is no running subscription to cancel."),
    ("call off without a subscription", "There is no running subscription to change."),
    ("long reference", "The invoice reference can be at most 60 characters."),
])
def test_invalid_changes_are_refused_in_their_own_words_and_change_nothing(case, message, plans, ada):
    end = None
    if case == "resume expired":
        make_subscription(ada, plans["pro"], status="expired", days_into_period=40)
    elif case not in ("no subscription", "call off without a subscription"):
        end = make_subscription(ada, plans["team"],
                                pending_plan_id=plans["pro"].id if case == "second downgrade" else None,
                                cancel_at_period_end=case in ("change while cancelling", "cancel twice"),
                                ).current_period_end
    attempts = {
        "current plan": lambda: services.change_plan(ada, plans["team"]),
        "not public": lambda: services.change_plan(ada, plans["secret"]),
        "resume expired": lambda: services.resume_subscription(ada),
        "resume not cancelling": lambda: services.resume_subscription(ada),
        "second downgrade": lambda: services.change_plan(ada, plans["free"]),
        "change while cancelling": lambda: services.change_plan(ada, plans["pro"]),
        "yearly": lambda: services.change_plan(ada, make_plan("team-yearly", 99000, billing_interval="year")),
        "call off nothing": lambda: services.call_off_downgrade(ada),
        "cancel twice": lambda: services.cancel_subscription(ada),
        "no subscription": lambda: services.cancel_subscription(ada),
        "call off without a subscription": lambda: services.call_off_downgrade(ada),
        "long reference": lambda: services.change_plan(ada, plans["free"], reference="x" * 61),
    }
    before = snapshot(ada)
    with pytest.raises(PlanChangeError) as refusal:
        attempts[case]()
    assert str(refusal.value) == message.format(end=end and services.day_text(end))
    assert snapshot(ada) == before


def test_each_kind_of_quote_says_what_it_would_do_when_and_for_how_much(plans, ada):
    now = utcnow()
    assert services.quote_plan_change(ada, plans["pro"], now) == services.Quote("start", plans["pro"], 2900, now)
    subscription = make_subscription(ada, plans["pro"], days_into_period=20)
    ten_days_in = subscription.current_period_start + timedelta(days=10)
    assert services.quote_plan_change(ada, plans["team"], ten_days_in) == services.Quote(
        "upgrade", plans["team"], 4667, ten_days_in, subscription=subscription)
    assert services.quote_plan_change(ada, plans["free"], ten_days_in) == services.Quote(
        "downgrade", plans["free"], 0, subscription.current_period_end, subscription=subscription)


def test_roll_over_renews_applies_downgrades_and_ends_cancelled_subscriptions(plans, db_session):
    renewing, downgrading, ending, current = make_user(), make_user(), make_user(), make_user()
    long_ago = utcnow() - timedelta(days=31)
    renewed = make_subscription(renewing, plans["pro"], current_period_start=long_ago)
    downgraded = make_subscription(downgrading, plans["team"], current_period_start=long_ago,
                                   pending_plan_id=plans["free"].id)
    ended = make_subscription(ending, plans["pro"], current_period_start=long_ago, cancel_at_period_end=True)
    untouched = make_subscription(current, plans["pro"])

    summary = services.roll_periods()

    assert (summary.renewed, summary.downgraded, summary.ended) == (2, 1, 1)
    assert renewed.current_period_start == long_ago + timedelta(days=30) and renewed.status == "active"
    renewal = db_session.scalars(select(Payment).where(Payment.subscription_id == renewed.id)).one()
    assert (renewal.amount_cents, renewal.status) == (2900, "pending")
    assert downgraded.plan_id == plans["free"].id and downgraded.pending_plan_id is None
    assert not db_session.scalars(select(Payment).where(Payment.subscription_id == downgraded.id)).all()
    assert ended.status == "canceled" and ending.current_subscription_id is None
    assert untouched.current_period_start > long_ago + timedelta(days=20)
    assert services.roll_periods() == services.RollOverSummary(), "running again finds nothing due"


def test_usage_meters_equal_the_database_sums_for_the_period(plans, ada, db_session):
    plan = make_plan(quotas={"tokens": 10_000, "requests": 50, "training_minutes": 30, "training_jobs": 3,
                             "minions": 2})
    subscription = make_subscription(ada, plan, days_into_period=5)
    inside = subscription.current_period_start + timedelta(days=1)
    for metric, quantity in [("input_tokens", 4000), ("output_tokens", 2500), ("input_tokens", 9000),
                             ("requests", 60), ("training_minutes", 12)]:
        make_usage(ada, metric, quantity, occurred_at=inside)
    make_usage(ada, "input_tokens", 99_999, occurred_at=subscription.current_period_start - timedelta(seconds=1))
    make_usage(make_user(), "requests", 77, occurred_at=inside)
    make_training_job(ada)
    make_minion(ada)

    meters = {meter.key: meter for meter in services.usage_meters(ada, subscription)}

    def database_sum(*metrics: str) -> int:
        return db_session.scalar(select(func.coalesce(func.sum(UsageRecord.quantity), 0)).where(
            UsageRecord.user_id == ada.id, UsageRecord.metric.in_(metrics),
            UsageRecord.occurred_at >= subscription.current_period_start,
            UsageRecord.occurred_at < subscription.current_period_end))

    assert meters["tokens"].used == database_sum("input_tokens", "output_tokens") == 15_500
    assert meters["requests"].used == database_sum("requests") == 60
    assert meters["requests"].over and meters["requests"].percent == 100
    assert meters["training_minutes"].used == database_sum("training_minutes") == 12
    assert (meters["training_jobs"].used, meters["minions"].used) == (1, 1)
    assert meters["tokens"].percent == 100 and meters["tokens"].over


def test_the_subscription_page_reads_the_live_subscription_with_the_users_own_payments_customer_meters_and_days(
        plans, ada, db_session, count_queries):
    plan = make_plan("metered", 2900, quotas={"tokens": 1_000, "requests": 50}, sort_order=-1)  # listed first
    subscription = make_subscription(ada, plan, days_into_period=2)
    make_usage(ada, "input_tokens", 1_200, occurred_at=subscription.current_period_start + timedelta(minutes=1))
    now, other = utcnow(), make_user()
    payments = [make_payment(ada, subscription, created_at=now - timedelta(days=days)) for days in (3, 1, 2)]
    make_payment(other, created_at=now)
    db_session.add_all([BillingCustomer(user_id=other.id, provider="stripe", customer_ref="cus_other"),
                        BillingCustomer(user_id=ada.id, provider="stripe", customer_ref="cus_ada")])
    make_subscription(other, plans["pro"], status="expired", days_into_period=40)

    with count_queries() as counter:
        page = services.subscription_page(ada, own=False, per_page=2)

    assert counter.count == 2, "the subscription, then everything else (the plan that fits from the plans read)"
    assert (page.subscription, page.ended) == (subscription, None)
    assert [plan.code for plan in page.plans] == ["metered", "free", "pro", "team"]
    assert [payment.id for payment in page.payments.items] == [payments[1].id, payments[2].id]
    assert page.payments.has_next and page.customer["customer_ref"] == "cus_ada"
    assert [(meter.key, meter.used, meter.limit) for meter in page.meters] == [("tokens", 1_200, 1_000),
                                                                               ("requests", 0, 50)]
    assert page.fits.code == "free", "the cheapest public plan that covers the use"
    assert page.days[0] == services.DailyUsage(subscription.current_period_start.date(), 1_200, 0, 0)
    assert page.usage_alerts == []

    ended = services.subscription_page(other, own=True, per_page=2)
    assert (ended.subscription, ended.ended.user_id, ended.ended.status) == (None, other.id, "expired")
    assert (ended.meters, ended.days, ended.fits, ended.customer["customer_ref"]) == ([], [], None, "cus_other")
    assert [payment.user_id for payment in ended.payments.items] == [other.id] and not ended.payments.has_next


def test_daily_usage_adds_up_each_day_of_the_period(plans, ada):
    subscription = make_subscription(ada, plans["pro"], days_into_period=3)
    first_day = subscription.current_period_start + timedelta(hours=1)
    make_usage(ada, "input_tokens", 100, occurred_at=first_day)
    make_usage(ada, "output_tokens", 50, occurred_at=first_day)
    make_usage(ada, "requests", 7, occurred_at=first_day + timedelta(days=2))

    days = services.daily_usage(ada, subscription)

    assert len(days) in (4, 5) and days[0].day == subscription.current_period_start.date()
    by_day = {entry.day: entry for entry in days}
    assert by_day[first_day.date()].tokens == 150
    assert by_day[(first_day + timedelta(days=2)).date()].requests == 7
    assert sum(entry.tokens for entry in days) == 150


def test_manual_invoice_gateway_leaves_payments_pending_with_unique_references(ada, db_session):
    gateway = ManualInvoiceGateway()
    first, second = Payment(user_id=ada.id, amount_cents=100), Payment(user_id=ada.id, amount_cents=100)
    outcomes = [gateway.collect(first), gateway.collect(second)]
    assert [outcome.status for outcome in outcomes] == ["pending", "pending"]
    assert first.provider_ref != second.provider_ref and first.idempotency_key != second.idempotency_key
    kept = Payment(user_id=ada.id, amount_cents=100, idempotency_key="retry-1")
    gateway.collect(kept)
    assert kept.idempotency_key == "retry-1"


def test_the_signed_in_query_carries_the_plan_and_provider_only_of_a_current_past_due_subscription(plans):
    # Built fresh here: the session loader caches the statement it extends, so only a fresh build
    # shows what overdue_columns adds.
    overdue = make_user(email="a-overdue@example.test")
    make_subscription(overdue, plans["team"], status="past_due", provider="stripe")
    paying = make_user(email="b-paying@example.test")
    make_subscription(paying, plans["pro"])
    not_current = make_user(email="c-not-current@example.test")
    make_subscription(not_current, plans["team"], status="past_due", provider="stripe")
    not_current.current_subscription_id = None
    make_user(email="d-no-plan@example.test")
    emails = ["a-overdue@example.test", "b-paying@example.test", "c-not-current@example.test", "d-no-plan@example.test"]
    rows = services.db.session.execute(
        services.overdue_columns(select(User.email).where(User.email.in_(emails)).order_by(User.email))
    ).all()
    assert [dict(row._mapping) for row in rows] == [
        {"email": "a-overdue@example.test", "overdue_plan_name": "Team", "overdue_provider": "stripe"},
        {"email": "b-paying@example.test", "overdue_plan_name": None, "overdue_provider": None},
        {"email": "c-not-current@example.test", "overdue_plan_name": None, "overdue_provider": None},
        {"email": "d-no-plan@example.test", "overdue_plan_name": None, "overdue_provider": None},
    ]


def test_a_plan_is_found_by_its_exact_code_and_a_missing_code_names_none(plans):
    make_plan("XXXX", 100)  # an odd code is still only its own plan's
    assert services.plan_by_code("pro") is plans["pro"]
    for code in (None, "", "Pro", "nope"):
        with pytest.raises(PlanChangeError) as refusal:
            services.plan_by_code(code)
        assert str(refusal.value) == "That plan does not exist."


def test_the_plan_is_read_with_this_user_s_live_subscription_only(plans, ada):
    make_subscription(make_user(), plans["team"])  # someone else's live subscription
    assert services.plan_and_live_subscription(ada, "pro") == (plans["pro"], None)
    mine = make_subscription(ada, plans["pro"])
    assert services.plan_and_live_subscription(ada, "team") == (plans["team"], mine)
    make_plan("XXXX", 100)
    for code in (None, "", "nope"):
        with pytest.raises(PlanChangeError) as refusal:
            services.plan_and_live_subscription(ada, code)
        assert str(refusal.value) == "That plan does not exist."


def test_the_live_subscription_comes_first_else_the_one_that_ended_last_with_its_plans(db_session, count_queries):
    user, neighbour = make_user(), make_user()
    old_plan, last_plan, live_plan = make_plan(), make_plan(), make_plan()
    now = utcnow()
    # Canceled mid-period: its period's end stays where it was, later than the others'.
    tied = make_subscription(user, old_plan, status="expired", current_period_end=now + timedelta(days=20))
    ended_last = make_subscription(user, last_plan, status="canceled", current_period_end=now + timedelta(days=20),
                                   pending_plan_id=old_plan.id)
    make_subscription(user, old_plan, status="canceled", current_period_end=now - timedelta(days=40))  # the newest row
    make_subscription(neighbour, live_plan)
    db_session.expunge_all()

    with count_queries() as counter:
        found = services.live_or_last_subscription(db_session.get(User, user.id))
        plans = found.plan.code, found.pending_plan.code
    assert found.id == ended_last.id != tied.id, "the latest end, and of two, the newer"
    assert plans == (last_plan.code, old_plan.code)
    assert counter.count == 2, "the user, then the subscription with both its plans"

    live = make_subscription(user, live_plan, current_period_end=now + timedelta(days=5))
    assert services.live_or_last_subscription(user).id == live.id, "live first, whatever the others' ends"
    assert services.live_or_last_subscription(make_user()) is None


def test_the_plan_that_fits_is_the_cheapest_other_plan_of_the_same_interval_covering_all_use(db_session):
    unlisted = {"is_public": False}  # offered only through the list given, until made public below
    current = make_plan(price_cents=900, quotas={"tokens": 1_000, "requests": 100}, **unlisted)
    yearly = make_plan(price_cents=500, billing_interval="year", quotas={"tokens": 10_000, "requests": 1_000},
                       **unlisted)
    short = make_plan(price_cents=1_000, quotas={"tokens": 1_500, "requests": 1_000}, **unlisted)
    later_in_list = make_plan(price_cents=2_000, sort_order=2, quotas={"tokens": 5_000, "requests": 1_000}, **unlisted)
    first_in_list = make_plan(price_cents=2_000, sort_order=1, quotas={"tokens": 5_000, "requests": 1_000}, **unlisted)
    namesake = make_plan(price_cents=2_000, sort_order=1, quotas={"tokens": 5_000, "requests": 1_000}, **unlisted)
    pricey = make_plan(price_cents=5_000, quotas={"tokens": 50_000, "requests": 10_000}, **unlisted)
    subscription = make_subscription(make_user(), current)
    plans = [pricey, namesake, later_in_list, first_in_list, short, yearly, current]  # as the page read them

    def fits(tokens: int, requests: int = 50):
        meters = [services.Meter(key="tokens", label="Tokens", used=tokens, limit=1_000),
                  services.Meter(key="requests", label="Requests", used=requests, limit=100)]
        return services.plan_that_fits(subscription, meters, plans)

    assert fits(999) is None, "nothing reached: no plan offered"
    assert fits(2_000) is first_in_list, "same price: the first listed, then the older"
    assert fits(1_000) is short, "reached exactly: the current plan covers it, but it is no move"
    assert fits(50, requests=100) is short, "any one quota reached is enough"
    assert fits(20_000, requests=5_000) is pricey
    assert fits(100_000) is None, "no plan covers it"
    pricey.is_public = True
    db_session.flush()
    reached = [services.Meter(key="tokens", label="Tokens", used=2_000, limit=1_000)]
    assert services.plan_that_fits(subscription, reached) is pricey, "without a list, the public plans"


def test_daily_usage_lists_each_day_of_the_period_up_to_today_with_its_totals(db_session, count_queries):
    user = make_user()
    start = datetime(2026, 11, 28, 17, 30, tzinfo=timezone.utc)
    subscription = make_subscription(user, make_plan(), current_period_start=start)
    make_usage(user, "input_tokens", 100, occurred_at=start + timedelta(hours=1))
    make_usage(user, "output_tokens", 50, occurred_at=start + timedelta(hours=2))
    make_usage(user, "requests", 7, occurred_at=datetime(2026, 11, 30, 9, tzinfo=timezone.utc))
    make_usage(user, "training_minutes", 12, occurred_at=datetime(2026, 12, 1, 9, tzinfo=timezone.utc))
    make_usage(user, "requests", 1_000, occurred_at=start - timedelta(minutes=1))  # the period before

    days = services.daily_usage(user, subscription, now=datetime(2026, 12, 1, 10, tzinfo=timezone.utc))
    assert [(day.day.isoformat(), day.tokens, day.requests, day.training_minutes) for day in days] == [
        ("2026-11-28", 150, 0, 0), ("2026-11-29", 0, 0, 0), ("2026-11-30", 0, 7, 0), ("2026-12-01", 0, 0, 12)]

    # Read already with the page's other figures: no query of its own.
    sums = {(date(2026, 11, 29), "output_tokens"): 5, (date(2026, 11, 29), "input_tokens"): 4}
    with count_queries() as counter:
        given = services.daily_usage(user, subscription, now=start + timedelta(days=1), sums=sums)
    assert [(day.day.isoformat(), day.tokens) for day in given] == [("2026-11-28", 0), ("2026-11-29", 9)]
    assert counter.count == 0


def test_daily_usage_of_a_period_already_over_ends_on_its_last_day(db_session):
    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    subscription = make_subscription(make_user(), make_plan(), current_period_start=start,
                                     current_period_end=datetime(2026, 12, 31, tzinfo=timezone.utc))
    days = services.daily_usage(subscription.user, subscription, now=datetime(2027, 1, 10, tzinfo=timezone.utc))
    assert (len(days), days[0].day, days[-1].day) == (30, date(2026, 12, 1), date(2026, 12, 30)), \
        "the period ends at midnight: 31 Dec is the next period's"
    subscription.current_period_end += timedelta(microseconds=1)
    days = services.daily_usage(subscription.user, subscription, now=datetime(2027, 1, 10, tzinfo=timezone.utc))
    assert days[-1].day == date(2026, 12, 31), "its last microsecond falls on 31 Dec"


def test_the_dunning_banner_names_the_overdue_plan_and_its_provider(db_session):
    class Reader:  # the signed-in user as the session loader reads it, with the banner's columns
        is_authenticated = True
        extras = {"overdue_plan_name": "Team", "overdue_provider": "stripe"}

    assert services.overdue_subscription(Reader()) == services.Overdue("Team", "stripe")
    Reader.extras = {"overdue_plan_name": None, "overdue_provider": None}
    assert services.overdue_subscription(Reader()) is None


def test_a_roll_over_run_writes_to_no_subscription_that_is_not_due(db_session):
    untouched = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    subscription = make_subscription(make_user(), make_plan(), updated_at=untouched)
    db_session.flush()
    services.roll_periods()
    db_session.expire_all()
    assert (subscription.updated_at, subscription.lock_version) == (untouched, 1)
