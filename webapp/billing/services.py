"""Subscription rules: plan changes, cancellation, period roll-over, and usage against quotas.

Every function that changes state adds rows and audit events to the current
session and leaves the commit to its caller, so one action is one transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, select
from sqlalchemy.orm import joinedload
from sqlalchemy.sql.expression import false, update

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.billing.gateway import GatewayError, PaymentGateway, default_gateway, gateway_for
from webapp.billing.models import (
    LIVE_SUBSCRIPTION_STATUSES, STRIPE, BillingCustomer, Payment, Plan, UserSubscription,
)
from webapp.billing.stripe_gateway import first_item, from_timestamp
from webapp.db import json_rows, record_columns, records_of, rows_of, utcnow
from webapp.extensions import db
from webapp.mail import absolute_url, send_mail
# A module import: metering's services read quotas, which read billing's models: this may run mid-import.
from webapp.metering import services as metering
from webapp.metering.models import UsageRollup
from webapp.pagination import Page, page_of, paginate
# Module imports: webapp.quotas reads billing's models, and the alerts read this module, so either may be
# mid-import when this runs.
from webapp import quotas
from webapp.billing import alerts

PERIOD_LENGTHS = {"month": timedelta(days=30), "year": timedelta(days=365)}
# Besides the metered ones, the quotas a downgrade compares with today's use (jobs at once and file sizes are
# not a standing use to warn about).
COUNTED_QUOTAS = ("training_jobs", "minions", "datasets")
MAX_REFERENCE_LENGTH = 60
# How long the proration Stripe previewed may be confirmed: later, the user is shown the amount again.
PRORATION_CONFIRM_WINDOW = timedelta(minutes=30)
NO_SUCH_PLAN = "That plan does not exist."
PLAN_ORDER = (Plan.sort_order, Plan.price_cents, Plan.id)
PAYMENT_ORDER = (Payment.created_at.desc(), Payment.id.desc())
STRIPE_NOT_CONFIGURED = ("This subscription is paid by card through Stripe, which this console is not set up for "
                         "now; contact support.")
# Stripe's subscription statuses as ours: "unpaid" and "incomplete_expired" end it, since nothing was collected.
STRIPE_STATUSES = {"active": "active", "trialing": "trialing", "past_due": "past_due", "incomplete": "past_due",
                   "paused": "past_due", "unpaid": "expired", "incomplete_expired": "expired", "canceled": "canceled"}


class PlanChangeError(Exception):
    """A subscription change that is not allowed; nothing was changed."""


class RefundError(Exception):
    """A refund that is not allowed; nothing was changed."""


@dataclass(frozen=True)
class Quote:
    """What choosing ``plan`` would do: start, upgrade at once, or downgrade at the period end."""

    kind: str  # "start", "checkout" (paid by card at Stripe), "upgrade" or "downgrade"
    plan: Plan
    amount_cents: int
    effective_at: datetime
    # A downgrade's quotas the user already exceeds, each with what will happen at the period end.
    warnings: tuple[str, ...] = ()
    # For an upgrade of a Stripe subscription: the moment Stripe's proration preview was made for.
    proration_date: int | None = None
    # The live subscription the plan would replace (None when there is none).
    subscription: UserSubscription | None = None


@dataclass(frozen=True)
class ChangeResult:
    message: str
    payment: Payment | None = None
    # Where the user goes next, off the console (Stripe Checkout, the Billing Portal).
    redirect_url: str | None = None


@dataclass(frozen=True)
class Meter:
    key: str
    label: str
    used: int
    limit: int
    # What happens at the limit (quotas.BLOCK or quotas.OVERAGE), and the overage price where billed.
    at_limit: str = "block"
    price: quotas.OveragePrice | None = None
    currency: str = "USD"
    metered: bool = False
    # A metered quota not reached yet: when it will be at this period's rate (None: not this period).
    runs_out_at: datetime | None = None

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 100

    @property
    def over(self) -> bool:
        return self.used > self.limit

    @property
    def reached(self) -> bool:
        """Nothing more fits: more work is refused now, or billed as overage."""
        return self.used >= self.limit

    @property
    def overage_cents(self) -> int:
        """The overage billed so far this period (at the next renewal)."""
        return self.price.amount_cents(self.used - self.limit) if self.at_limit == quotas.OVERAGE else 0


@dataclass(frozen=True)
class DailyUsage:
    day: date
    tokens: int
    requests: int
    training_minutes: int


def money(cents: int, currency: str = "USD") -> str:
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency, currency + " ")
    return f"{symbol}{cents / 100:,.2f}"


def day_text(moment: datetime | date) -> str:
    """A day as people write it: 1 Mar 2026 (no leading zero)."""
    return f"{moment.day} {moment:%b %Y}"


def count_text(number: int) -> str:
    return f"{number:,}"


# --- reading -------------------------------------------------------------------


def is_live() -> ColumnElement[bool]:
    return UserSubscription.status.in_(LIVE_SUBSCRIPTION_STATUSES)


def with_plans(statement: Select) -> Select:
    """``statement`` of subscriptions, with their plan and the plan they move to loaded in the same query."""
    return statement.options(joinedload(UserSubscription.plan), joinedload(UserSubscription.pending_plan))


def live_subscription(user: User) -> UserSubscription | None:
    """The user's one trialing, active or past-due subscription, with its plans."""
    return db.session.scalars(
        with_plans(select(UserSubscription)).where(UserSubscription.user_id == user.id, is_live())
    ).first()


def live_or_last_subscription(user: User) -> UserSubscription | None:
    """The user's live subscription, else the one that ended last, with its plans."""
    return db.session.scalars(
        with_plans(select(UserSubscription))
        .where(UserSubscription.user_id == user.id)
        .order_by(case((is_live(), 0), else_=1), UserSubscription.current_period_end.desc(),
                  UserSubscription.id.desc())
        .limit(1)
    ).first()


def public_plans() -> list[Plan]:
    return list(db.session.scalars(select(Plan).where(Plan.is_public).order_by(*PLAN_ORDER)))


def plan_by_code(code: str | None) -> Plan:
    plan = db.session.scalars(select(Plan).where(Plan.code == (code or ""))).first()
    if plan is None:
        raise PlanChangeError(NO_SUCH_PLAN)
    return plan


def plan_and_live_subscription(user: User, code: str | None) -> tuple[Plan, UserSubscription | None]:
    """The plan ``code`` names and the user's live subscription with its plans, in one query."""
    row = db.session.execute(
        with_plans(select(Plan, UserSubscription))
        .outerjoin(UserSubscription, (UserSubscription.user_id == user.id) & is_live())
        .where(Plan.code == (code or ""))
    ).first()
    if row is None:
        raise PlanChangeError(NO_SUCH_PLAN)
    plan, subscription = row
    return plan, subscription


def payments_for(user: User, page: int, per_page: int) -> Page:
    return paginate(select(Payment).where(Payment.user_id == user.id).order_by(*PAYMENT_ORDER), page, per_page)


def run_out_at(used: int, limit: int, period_start: datetime, period_end: datetime,
               now: datetime) -> datetime | None:
    """When ``limit`` is reached if use goes on at this period's rate so far, or None when not before the period
    ends (nothing used yet, or the rate is too low). Only for a limit not reached yet."""
    elapsed = now - period_start
    if used <= 0 or used >= limit or elapsed <= timedelta(0):
        return None
    # At ``used / elapsed`` per unit of time, the rest of the limit takes ``elapsed * rest / used``.
    moment = now + elapsed * ((limit - used) / used)
    return moment if moment < period_end else None


def meter_terms(subscription: UserSubscription) -> tuple[list[str], quotas.Allowance]:
    """The quotas the plan limits, in QUOTA_LABELS order (PostgreSQL's JSONB does not keep the keys' order),
    and the allowance of the subscription's current period."""
    limits = subscription.plan.quotas or {}
    keys = [key for key in quotas.QUOTA_LABELS if key in limits and limits[key] is not None]
    return keys, quotas.Allowance(limits, subscription.current_period_start, subscription.current_period_end)


def daily_usage_rows(user: User, subscription: UserSubscription) -> Any:
    """The period's (day, metric) totals as JSON rows, for a page that reads them with its other figures."""
    statement = metering.daily_totals_statement(user.id, subscription.current_period_start,
                                                subscription.current_period_end)
    return json_rows(statement, UsageRollup.day, UsageRollup.metric)


def meter_usage_columns(user: User, subscription: UserSubscription) -> dict[str, Any]:
    """Scalar subqueries of the meters' use, for a page that reads them with its other figures in one query."""
    keys, terms = meter_terms(subscription)
    return {key: quotas.usage_count(user.id, key, terms) for key in keys}


def usage_meters(user: User, subscription: UserSubscription, now: datetime | None = None,
                 usage: dict[str, int] | None = None) -> list[Meter]:
    """One meter per quota of the plan, for the subscription's current period, with each metered one's forecast.

    ``usage`` is each quota's use when the page read it already (through ``meter_usage_columns``).
    """
    now = now or utcnow()
    plan = subscription.plan
    limits = plan.quotas or {}
    keys, terms = meter_terms(subscription)
    usage = quotas.usage(user.id, keys, terms) if usage is None else usage
    meters = []
    for key in keys:
        limit, metered, used = int(limits[key]), key in quotas.METERED_QUOTAS, int(usage[key] or 0)
        meters.append(Meter(
            key=key, label=quotas.QUOTA_LABELS[key], used=used, limit=limit, at_limit=terms.at_limit(key),
            price=terms.overage_price(key), currency=plan.currency, metered=metered,
            runs_out_at=run_out_at(used, limit, terms.period_start, terms.period_end, now) if metered else None,
        ))
    return meters


def plan_that_fits(subscription: UserSubscription, meters: list[Meter], plans: list[Plan] | None = None) -> Plan | None:
    """The cheapest public plan, other than the current one, whose limits cover all of this period's use;
    only looked for once a quota is reached (None otherwise, or when no plan covers it).

    ``plans`` is the public plans when the page read them already.
    """
    if not any(meter.reached for meter in meters):
        return None
    usage = {meter.key: meter.used for meter in meters}
    interval = subscription.plan.billing_interval
    candidates = [plan for plan in (public_plans() if plans is None else plans) if plan.billing_interval == interval]
    for plan in sorted(candidates, key=lambda plan: (plan.price_cents, plan.sort_order, plan.id)):
        terms = quotas.Allowance(quotas.with_defaults(plan.quotas), subscription.current_period_start,
                                 subscription.current_period_end)
        if plan.id != subscription.plan_id and terms.covers(usage):
            return plan
    return None


def downgrade_warnings(user: User, subscription: UserSubscription, plan: Plan) -> tuple[str, ...]:
    """What the move to ``plan`` at the period end will do to use that already exceeds its quotas."""
    # The new plan's terms over this period: its limits, and this period's use counted as it will
    # count it (whether retired minions count).
    new_terms = quotas.Allowance(quotas.with_defaults(plan.quotas), subscription.current_period_start,
                                 subscription.current_period_end)
    on = day_text(subscription.current_period_end)
    warnings = []
    keys = [key for key in quotas.QUOTA_LABELS if new_terms.limit(key) is not None
            and (key in quotas.METERED_QUOTAS or key in COUNTED_QUOTAS)]
    usage = quotas.usage(user.id, keys, new_terms)
    for key in keys:
        limit, used = new_terms.limit(key), usage[key]
        if used <= limit:
            continue
        label = quotas.QUOTA_LABELS[key].lower()
        if key in quotas.METERED_QUOTAS:
            price = new_terms.overage_price(key)
            then = (f"use past it is billed at {money(price.cents, plan.currency)} per {count_text(price.per)}"
                    if new_terms.at_limit(key) == quotas.OVERAGE else "work that needs more is refused")
            warnings.append(f"You used {count_text(used)} {label} this period; {plan.name} allows "
                            f"{count_text(limit)} per period. From {on}, once a period reaches it, {then}.")
        elif key == "training_jobs":
            warnings.append(f"You started {count_text(used)} training jobs this period; {plan.name} allows "
                            f"{count_text(limit)} per period. From {on}, no job starts past that number.")
        else:
            warnings.append(f"You have {count_text(used)} {label}; {plan.name} allows {count_text(limit)}. "
                            f"On {on} they all stay, but you cannot add another until you have fewer than "
                            f"{count_text(limit)}.")
    return tuple(warnings)


def daily_usage(user: User, subscription: UserSubscription, now: datetime | None = None,
                sums: dict[tuple[date, str], int] | None = None) -> list[DailyUsage]:
    """Tokens, requests and training minutes per day of the current period, up to today, from the daily rollup.

    ``sums`` is each (day, metric) total when the page read them already (through ``daily_usage_rows``).
    """
    start = subscription.current_period_start
    last = min(now or utcnow(), subscription.current_period_end - timedelta(microseconds=1))
    if sums is None:
        sums = metering.daily_totals(user.id, start, subscription.current_period_end)
    days = []
    current = start.date()
    while current <= last.date():
        days.append(DailyUsage(
            day=current,
            tokens=sums.get((current, "input_tokens"), 0) + sums.get((current, "output_tokens"), 0),
            requests=sums.get((current, "requests"), 0),
            training_minutes=sums.get((current, "training_minutes"), 0),
        ))
        current += timedelta(days=1)
    return days


@dataclass(frozen=True)
class SubscriptionPage:
    """What the subscription page shows of a user (:func:`subscription_page`)."""

    subscription: UserSubscription | None
    # The subscription that ended last, when none is live.
    ended: UserSubscription | None
    plans: list[Plan]
    meters: list[Meter]
    fits: Plan | None
    days: list[DailyUsage]
    usage_alerts: list[dict[str, Any]]
    payments: Page
    # The user's customer record at Stripe ({"customer_ref": ...}), once there is one.
    customer: dict[str, Any] | None


def subscription_page(user: User, own: bool, per_page: int) -> SubscriptionPage:
    """The subscription page in two queries: the subscription (live, else the last one), then the public plans, the
    first page of payments, the Stripe customer, the meters' use, the chart's daily totals and, on one's own page,
    the usage alerts."""
    latest = live_or_last_subscription(user)
    subscription = latest if latest is not None and latest.status in LIVE_SUBSCRIPTION_STATUSES else None
    usage = meter_usage_columns(user, subscription) if subscription else {}
    payments = select(*record_columns(Payment)).where(Payment.user_id == user.id).limit(per_page + 1)
    customer = select(BillingCustomer.customer_ref).where(BillingCustomer.user_id == user.id).limit(1)
    columns = {"plans": json_rows(select(*record_columns(Plan)).where(Plan.is_public), *PLAN_ORDER),
               "payments": json_rows(payments, *PAYMENT_ORDER),
               "customer": json_rows(customer, BillingCustomer.id),
               **{f"used_{key}": column for key, column in usage.items()}}
    if subscription:
        columns["days"] = daily_usage_rows(user, subscription)
    if own:
        columns["alerts"] = json_rows(alerts.undismissed(user), *alerts.BANNER_ORDER)
    row = db.session.execute(select(*(column.label(name) for name, column in columns.items()))).one()._mapping
    plans = records_of(Plan, row["plans"])
    meters = usage_meters(user, subscription, usage={key: int(row[f"used_{key}"] or 0) for key in usage}) \
        if subscription else []
    sums = {(date.fromisoformat(day["day"]), day["metric"]): int(day["total"])
            for day in rows_of(row["days"])} if subscription else {}
    customers = rows_of(row["customer"])
    return SubscriptionPage(
        subscription=subscription,
        ended=None if subscription else latest,
        plans=plans,
        meters=meters,
        fits=plan_that_fits(subscription, meters, plans) if subscription else None,
        days=daily_usage(user, subscription, sums=sums) if subscription else [],
        usage_alerts=alerts.highest_per_quota(rows_of(row["alerts"])) if own else [],
        payments=page_of(records_of(Payment, row["payments"]), 1, per_page),
        customer=customers[0] if customers else None,
    )


# --- plan changes ----------------------------------------------------------------


def prorated_amount(subscription: UserSubscription, plan: Plan, now: datetime) -> int:
    """The price difference for the rest of the current period, in cents, rounded half up."""
    start, end = subscription.current_period_start, subscription.current_period_end
    remaining = max(end - now, timedelta(0)) // timedelta(microseconds=1)
    total = max(end - start, timedelta(microseconds=1)) // timedelta(microseconds=1)
    difference = plan.price_cents - subscription.plan.price_cents
    return max(0, (2 * difference * remaining + total) // (2 * total))


def quote_plan_change(user: User, plan: Plan, now: datetime | None = None, gateway: PaymentGateway | None = None,
                      proration_date: int | None = None) -> Quote:
    """What moving ``user`` to ``plan`` would do and cost; PlanChangeError when it is not allowed.

    Under Stripe a paid plan is bought through Checkout, and the upgrade of a Stripe subscription
    costs what Stripe's proration preview for ``proration_date`` (default: now) says.
    """
    return quote_against(user, live_subscription(user), plan, now, gateway, proration_date)


def quote_plan_code(user: User, code: str | None) -> Quote:
    """The quote of moving ``user`` to the plan ``code`` names, now: the confirmation step, which reads the plan and
    the live subscription in one query."""
    plan, subscription = plan_and_live_subscription(user, code)
    return quote_against(user, subscription, plan)


def quote_against(user: User, subscription: UserSubscription | None, plan: Plan, now: datetime | None = None,
                  gateway: PaymentGateway | None = None, proration_date: int | None = None) -> Quote:
    """:func:`quote_plan_change`, with ``subscription`` the user's live one as read already."""
    now = now or utcnow()
    gateway = gateway or default_gateway()
    if not plan.is_public:
        raise PlanChangeError(f"The {plan.name} plan is not offered for self-service; contact sales to join it.")
    by_card = gateway.runs_subscriptions and plan.price_cents > 0
    if by_card and not plan.stripe_price_id:
        raise PlanChangeError(f"The {plan.name} plan cannot be paid by card yet; contact support to join it.")
    if subscription is None:
        return Quote("checkout" if by_card else "start", plan, plan.price_cents, now)
    current = subscription.plan
    if plan.id == current.id:
        raise PlanChangeError(f"You are already on the {plan.name} plan.")
    if subscription.cancel_at_period_end:
        raise PlanChangeError(
            f"Your subscription is set to end on {day_text(subscription.current_period_end)}; "
            "resume it before changing plan."
        )
    if plan.billing_interval != current.billing_interval:
        raise PlanChangeError("Switching between monthly and yearly billing is not available yet.")
    on_stripe = subscription.provider == STRIPE
    if on_stripe and not gateway.runs_subscriptions:
        raise PlanChangeError(STRIPE_NOT_CONFIGURED)
    if by_card and not on_stripe:
        # A subscription invoiced by hand becomes a card one through Checkout, which replaces it once paid.
        return Quote("checkout", plan, plan.price_cents, now, subscription=subscription)
    if plan.price_cents >= current.price_cents:
        if on_stripe:
            moment = confirmed_proration_date(proration_date, now)
            return Quote("upgrade", plan, gateway.preview_change(subscription, plan, moment), now,
                         proration_date=moment, subscription=subscription)
        return Quote("upgrade", plan, prorated_amount(subscription, plan, now), now, subscription=subscription)
    if on_stripe and not plan.price_cents:
        raise PlanChangeError(
            f"To move to the {plan.name} plan, cancel the subscription: when it ends on "
            f"{day_text(subscription.current_period_end)} you are on {plan.name}, and no card is charged again."
        )
    if subscription.pending_plan_id is not None:
        raise PlanChangeError(
            f"A move to the {subscription.pending_plan.name} plan is already scheduled; call it off first."
        )
    return Quote("downgrade", plan, 0, subscription.current_period_end,
                 warnings=downgrade_warnings(user, subscription, plan), subscription=subscription)


def confirmed_proration_date(proration_date: int | None, now: datetime) -> int:
    """The moment a Stripe proration is priced at: now, or the recent moment the user saw and confirmed."""
    if proration_date is None:
        return int(now.timestamp())
    if not now - PRORATION_CONFIRM_WINDOW <= from_timestamp(proration_date) <= now + timedelta(minutes=1):
        raise PlanChangeError("The amount shown has expired; open the plan again to see the amount due now.")
    return proration_date


def _bill(subscription: UserSubscription, amount_cents: int, description: str, gateway: PaymentGateway,
          idempotency_key: str | None = None, lines: list[dict] | None = None) -> Payment:
    payment = Payment(
        user_id=subscription.user_id, subscription=subscription, amount_cents=amount_cents,
        currency=subscription.plan.currency, description=description[:255], idempotency_key=idempotency_key,
        lines=lines or [],
    )
    db.session.add(payment)
    gateway.collect(payment)
    return payment


def _invoice_text(text: str, reference: str) -> str:
    return f"{text} (ref. {reference})" if reference else text


def change_plan(user: User, plan: Plan, actor: User | None = None, expected_amount_cents: int | None = None,
                reference: str = "", now: datetime | None = None,
                gateway: PaymentGateway | None = None, proration_date: int | None = None) -> ChangeResult:
    """Start, upgrade or schedule a downgrade as quoted; ``expected_amount_cents`` is what the user confirmed
    (for a Stripe upgrade, at the ``proration_date`` the confirmation was priced at)."""
    now = now or utcnow()
    gateway = gateway or default_gateway()
    quote = quote_plan_change(user, plan, now, gateway, proration_date)
    if expected_amount_cents is not None and expected_amount_cents != quote.amount_cents:
        raise PlanChangeError(
            f"The amount due is now {money(quote.amount_cents, plan.currency)}, not "
            f"{money(expected_amount_cents, plan.currency)}; open the plan again to confirm the new amount."
        )
    reference = reference.strip()
    if len(reference) > MAX_REFERENCE_LENGTH:
        raise PlanChangeError(f"The invoice reference can be at most {MAX_REFERENCE_LENGTH} characters.")
    if quote.kind == "start":
        return _start(user, plan, actor, reference, now, gateway)
    if quote.kind == "checkout":
        return _checkout(user, plan, actor, gateway)
    subscription = live_subscription(user)
    if quote.kind == "downgrade":
        if subscription.provider == STRIPE:
            subscription.provider_schedule_ref = gateway.schedule_change(subscription, plan)
        subscription.pending_plan = plan
        record("subscription.downgrade_scheduled", subscription,
               {"pending_plan": [None, plan.code], "effective_at": subscription.current_period_end}, actor=actor)
        db.session.flush()
        return ChangeResult(f"You move to the {plan.name} plan on {day_text(subscription.current_period_end)}.")
    if subscription.provider == STRIPE:
        return _upgrade_at_stripe(subscription, quote, actor, gateway)
    previous = subscription.plan
    changes = {"plan": [previous.code, plan.code], "amount_cents": quote.amount_cents}
    if subscription.pending_plan is not None:
        changes["pending_plan"] = [subscription.pending_plan.code, None]
    subscription.plan = plan
    subscription.pending_plan = None
    payment = None
    if quote.amount_cents:
        payment = _bill(subscription, quote.amount_cents,
                        _invoice_text(f"Upgrade from {previous.name} to {plan.name}, prorated", reference), gateway)
        changes["payment"] = payment.provider_ref
    record("subscription.upgrade", subscription, changes, actor=actor)
    db.session.flush()
    return ChangeResult(_charged(f"You are now on the {plan.name} plan.", payment), payment)


def _checkout(user: User, plan: Plan, actor: User | None, gateway: PaymentGateway) -> ChangeResult:
    if actor is not None and actor.id != user.id:
        raise PlanChangeError("A card subscription is started by its holder, who pays at Stripe's checkout; "
                              "ask them to choose the plan themselves.")
    checkout, url = gateway.start_checkout(user, plan, absolute_url("billing.checkout_return"),
                                           absolute_url("billing.subscription"))
    record("subscription.checkout_started", checkout, {"plan": plan.code, "checkout": checkout.session_ref},
           actor=actor)
    return ChangeResult(f"Continue to Stripe to pay for the {plan.name} plan.", redirect_url=url)


def _upgrade_at_stripe(subscription: UserSubscription, quote: Quote, actor: User | None,
                       gateway: PaymentGateway) -> ChangeResult:
    """Stripe moves the subscription and invoices the proration it previewed; its state is applied here at once."""
    previous = subscription.plan
    stripe_subscription = gateway.change_now(subscription, quote.plan, quote.proration_date)
    sync_stripe_subscription(subscription, stripe_subscription, from_timestamp(quote.proration_date))
    record("subscription.upgrade", subscription,
           {"plan": [previous.code, quote.plan.code], "amount_cents": quote.amount_cents,
            "stripe_subscription": subscription.provider_ref}, actor=actor)
    db.session.flush()
    charged = f" Stripe charges {money(quote.amount_cents, quote.plan.currency)} to your card." \
        if quote.amount_cents else ""
    return ChangeResult(f"You are now on the {quote.plan.name} plan.{charged}")


def _charged(message: str, payment: Payment | None) -> str:
    if payment is None:
        return message
    return f"{message} Invoice {payment.provider_ref} for {money(payment.amount_cents, payment.currency)} is pending."


def _start(user: User, plan: Plan, actor: User | None, reference: str, now: datetime,
           gateway: PaymentGateway) -> ChangeResult:
    subscription = UserSubscription(
        user_id=user.id, plan=plan, status="active", current_period_start=now,
        current_period_end=now + PERIOD_LENGTHS[plan.billing_interval],
    )
    db.session.add(subscription)
    db.session.flush()
    user.current_subscription_id = subscription.id
    payment = None
    if plan.price_cents:
        payment = _bill(subscription, plan.price_cents, _invoice_text(f"{plan.name} plan, first period", reference),
                        gateway)
    record("subscription.start", subscription,
           {"plan": plan.code, "payment": payment.provider_ref if payment else None}, actor=actor)
    return ChangeResult(_charged(f"Your {plan.name} subscription has started.", payment), payment)


def _require_live(user: User, action: str) -> UserSubscription:
    subscription = live_subscription(user)
    if subscription is None:
        raise PlanChangeError(f"There is no running subscription to {action}.")
    return subscription


def _stripe_for(subscription: UserSubscription, gateway: PaymentGateway | None) -> PaymentGateway | None:
    """The gateway to tell about a change of ``subscription``: Stripe for a Stripe one, else none."""
    if subscription.provider != STRIPE:
        return None
    gateway = gateway or default_gateway()
    if not gateway.runs_subscriptions:
        raise PlanChangeError(STRIPE_NOT_CONFIGURED)
    return gateway


def call_off_downgrade(user: User, actor: User | None = None, gateway: PaymentGateway | None = None) -> ChangeResult:
    subscription = _require_live(user, "change")
    if subscription.pending_plan is None:
        raise PlanChangeError("No plan change is scheduled.")
    stripe_gateway = _stripe_for(subscription, gateway)
    if stripe_gateway:
        stripe_gateway.call_off_change(subscription)
        subscription.provider_schedule_ref = None
    record("subscription.downgrade_called_off", subscription,
           {"pending_plan": [subscription.pending_plan.code, None]}, actor=actor)
    subscription.pending_plan = None
    db.session.flush()
    return ChangeResult(f"You stay on the {subscription.plan.name} plan.")


def cancel_subscription(user: User, actor: User | None = None, now: datetime | None = None,
                        gateway: PaymentGateway | None = None) -> ChangeResult:
    """Cancel at the end of the period; a scheduled downgrade is dropped since nothing follows."""
    subscription = _require_live(user, "cancel")
    if subscription.cancel_at_period_end:
        raise PlanChangeError(
            f"Your subscription is already set to end on {day_text(subscription.current_period_end)}."
        )
    stripe_gateway = _stripe_for(subscription, gateway)
    if stripe_gateway:
        stripe_gateway.set_cancel_at_period_end(subscription, True)
        subscription.provider_schedule_ref = None
    changes = {"cancel_at_period_end": [False, True]}
    if subscription.pending_plan is not None:
        changes["pending_plan"] = [subscription.pending_plan.code, None]
        subscription.pending_plan = None
    subscription.cancel_at_period_end = True
    subscription.canceled_at = now or utcnow()
    record("subscription.cancel", subscription, changes, actor=actor)
    db.session.flush()
    return ChangeResult(f"Your subscription ends on {day_text(subscription.current_period_end)}.")


def resume_subscription(user: User, actor: User | None = None, now: datetime | None = None,
                        gateway: PaymentGateway | None = None) -> ChangeResult:
    subscription = live_subscription(user)
    if subscription is None or subscription.current_period_end <= (now or utcnow()):
        raise PlanChangeError("That subscription has already ended and cannot be resumed; choose a plan to start again.")
    if not subscription.cancel_at_period_end:
        raise PlanChangeError("Your subscription is not set to end, so there is nothing to resume.")
    stripe_gateway = _stripe_for(subscription, gateway)
    if stripe_gateway:
        stripe_gateway.set_cancel_at_period_end(subscription, False)
    subscription.cancel_at_period_end = False
    subscription.canceled_at = None
    record("subscription.resume", subscription, {"cancel_at_period_end": [True, False]}, actor=actor)
    db.session.flush()
    return ChangeResult(f"Your subscription renews on {day_text(subscription.current_period_end)}.")


# --- period roll-over ------------------------------------------------------------


@dataclass
class RollOverSummary:
    renewed: int = 0
    downgraded: int = 0
    ended: int = 0


def roll_periods(now: datetime | None = None, gateway: PaymentGateway | None = None) -> RollOverSummary:
    """Close every live subscription whose period has passed: end it, apply its downgrade, or renew it."""
    now = now or utcnow()
    gateway = gateway or default_gateway()
    summary = RollOverSummary()
    take_sqlite_write_lock()
    # Overlapping runs split the work: on PostgreSQL each takes the due rows no other run holds
    # and skips the rest, so every subscription is rolled by exactly one run.
    due = db.session.scalars(
        select(UserSubscription)
        .options(joinedload(UserSubscription.plan), joinedload(UserSubscription.pending_plan),
                 joinedload(UserSubscription.user))
        # Stripe rolls its own subscriptions' periods, and its webhooks report them.
        .where(UserSubscription.status.in_(LIVE_SUBSCRIPTION_STATUSES), UserSubscription.current_period_end <= now,
               UserSubscription.provider != STRIPE)
        .order_by(UserSubscription.id)
        .with_for_update(skip_locked=True, of=UserSubscription)
    )
    for subscription in due:
        while subscription.current_period_end <= now:
            # The period that just ended was used, and its overage is billed, under the plan it ran on.
            ended = quotas.Allowance(quotas.with_defaults(subscription.plan.quotas),
                                     subscription.current_period_start, subscription.current_period_end)
            if subscription.cancel_at_period_end:
                _end(subscription, ended, gateway)
                summary.ended += 1
                break
            if subscription.pending_plan is not None:
                record("subscription.downgrade_applied", subscription,
                       {"plan": [subscription.plan.code, subscription.pending_plan.code]}, actor=None)
                subscription.plan, subscription.pending_plan = subscription.pending_plan, None
                summary.downgraded += 1
            _renew(subscription, ended, gateway)
            summary.renewed += 1
    db.session.flush()
    return summary


def take_sqlite_write_lock() -> None:
    """On SQLite, start the transaction as a writer (a no-op UPDATE), so an overlapping run
    waits for this one (busy_timeout) instead of failing later on a snapshot that went stale.
    SQLite has no row locks; it serialises writers."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(update(UserSubscription).where(false()).values(id=UserSubscription.id))


def overage_lines(user: User, ended: quotas.Allowance, currency: str) -> list[dict]:
    """One payment line per metered quota used past its limit in the period ``ended`` covers, where it is billed."""
    period = f"{day_text(ended.period_start)} – {day_text(ended.period_end)}"
    return [
        {"description": f"{quotas.QUOTA_LABELS[overage.key]} past the {count_text(ended.limit(overage.key))} limit, "
                        f"{period}: {count_text(overage.quantity)} at {money(overage.price.cents, currency)} "
                        f"per {count_text(overage.price.per)}",
         "amount_cents": overage.amount_cents, "quota": overage.key, "quantity": overage.quantity}
        for overage in quotas.period_overages(user, ended)
    ]


def _end(subscription: UserSubscription, ended: quotas.Allowance, gateway: PaymentGateway) -> None:
    record("subscription.end", subscription, {"status": [subscription.status, "canceled"]}, actor=None)
    subscription.status = "canceled"
    if subscription.user.current_subscription_id == subscription.id:
        subscription.user.current_subscription_id = None
    # The last period's overage has no renewal to ride on: it is billed on its own.
    bill_overage(subscription, ended, gateway, "last period")


def bill_overage(subscription: UserSubscription, ended: quotas.Allowance, gateway: PaymentGateway,
                 which: str) -> Payment | None:
    """Bill the overage of the period ``ended`` covers as a payment of its own, once (keyed by period)."""
    lines = overage_lines(subscription.user, ended, subscription.plan.currency)
    if not lines:
        return None
    return _bill(subscription, sum(line["amount_cents"] for line in lines),
                 f"{subscription.plan.name} plan, overage of the {which} to {day_text(ended.period_end)}", gateway,
                 idempotency_key=f"overage-{subscription.id}-{ended.period_end:%Y%m%dT%H%M%S}", lines=lines)


def _renew(subscription: UserSubscription, ended: quotas.Allowance, gateway: PaymentGateway) -> None:
    start = subscription.current_period_end
    subscription.current_period_start = start
    subscription.current_period_end = start + PERIOD_LENGTHS[subscription.plan.billing_interval]
    if subscription.status == "trialing":
        subscription.status = "active"
    plan = subscription.plan
    description = f"{plan.name} plan, period from {day_text(start)}"
    lines = overage_lines(subscription.user, ended, plan.currency)
    if lines:
        description += ", with the overage of the period before"
        lines.insert(0, {"description": f"{plan.name} plan, {day_text(start)} – "
                                        f"{day_text(subscription.current_period_end)}",
                         "amount_cents": plan.price_cents})
    payment = None
    if plan.price_cents or lines:
        # Keyed by period, so a renewal billed twice would collide instead of charging twice.
        payment = _bill(subscription, sum(line["amount_cents"] for line in lines) or plan.price_cents,
                        description, gateway, idempotency_key=f"renewal-{subscription.id}-{start:%Y%m%dT%H%M%S}",
                        lines=lines)
    changes = {"period_start": start, "plan": plan.code, "payment": payment.provider_ref if payment else None}
    if lines:
        changes["overage_cents"] = sum(line["amount_cents"] for line in lines[1:])
    record("subscription.renew", subscription, changes, actor=None)


# --- Stripe's state, and what it means here --------------------------------------------------


def plan_for_price(price_ref: str) -> Plan | None:
    return db.session.scalars(select(Plan).where(Plan.stripe_price_id == price_ref)).first()


def sync_stripe_subscription(subscription: UserSubscription, stripe_subscription: dict,
                             synced_at: datetime) -> dict:
    """Apply Stripe's state of ``subscription`` as of ``synced_at``; the changes, as the audit trail records them.

    A subscription that turns past due sends its holder the dunning mail; one that ends stops
    being the user's current subscription (its quotas fall back to the sign-up plan's).
    """
    item = first_item(stripe_subscription)
    closing = quotas.Allowance(quotas.with_defaults(subscription.plan.quotas), subscription.current_period_start,
                               subscription.current_period_end)
    status = STRIPE_STATUSES.get(stripe_subscription["status"], subscription.status)
    reason = (stripe_subscription.get("cancellation_details") or {}).get("reason")
    if status == "canceled" and reason == "payment_failed":
        status = "expired"  # Stripe gave up collecting: the subscription lapsed, nobody cancelled it
    plan = plan_for_price(item["price"]["id"]) or subscription.plan
    changes: dict = {}

    def put(name: str, value, shown=None) -> None:
        if getattr(subscription, name) != value:
            changes[name] = shown or [getattr(subscription, name), value]
            setattr(subscription, name, value)

    before = subscription.status
    put("plan", plan, [subscription.plan.code if subscription.plan else None, plan.code])
    put("status", status)
    put("current_period_start", from_timestamp(item["current_period_start"]))
    put("current_period_end", from_timestamp(item["current_period_end"]))
    put("cancel_at_period_end", bool(stripe_subscription.get("cancel_at_period_end")))
    put("canceled_at", from_timestamp(stripe_subscription.get("canceled_at")))
    if subscription.pending_plan is not None and (plan.id == subscription.pending_plan.id
                                                  or not stripe_subscription.get("schedule")):
        put("pending_plan", None, [subscription.pending_plan.code, None])
    subscription.provider_schedule_ref = stripe_subscription.get("schedule") if subscription.pending_plan else None
    subscription.provider_synced_at = synced_at
    if status not in LIVE_SUBSCRIPTION_STATUSES and subscription.user.current_subscription_id == subscription.id:
        subscription.user.current_subscription_id = None
    if status == "past_due" and before != "past_due":
        notify_payment_failed(subscription)
    if closing.period_start < closing.period_end <= subscription.current_period_start:
        # Stripe renewed: the period before is closed, and its overage goes onto the Stripe invoice as items.
        bill_overage(subscription, closing, default_gateway(), "period")
    return changes


def mark_past_due(subscription: UserSubscription) -> bool:
    """A renewal failed: past due until a payment succeeds; True when it was not already."""
    if subscription.status not in ("active", "trialing"):
        return False
    subscription.status = "past_due"
    notify_payment_failed(subscription)
    return True


def notify_payment_failed(subscription: UserSubscription) -> None:
    send_mail(subscription.user.email, "Your card payment failed", "payment_failed", user=subscription.user,
              plan=subscription.plan, link=absolute_url("billing.subscription"))


@dataclass(frozen=True)
class Overdue:
    """What the dunning banner says of a past-due subscription."""

    plan_name: str
    provider: str


def overdue_columns(query: Select) -> Select:
    """The signed-in user's query, with the plan and provider of their subscription when it is past due."""
    return (
        query.outerjoin(UserSubscription, (UserSubscription.id == User.current_subscription_id)
                        & (UserSubscription.status == "past_due"))
        .outerjoin(Plan, Plan.id == UserSubscription.plan_id)
        .add_columns(Plan.name.label("overdue_plan_name"), UserSubscription.provider.label("overdue_provider"))
    )


def overdue_subscription(user) -> Overdue | None:
    """The signed-in user's subscription when a payment of it failed and nothing has been paid since."""
    if not user.is_authenticated or user.extras.get("overdue_plan_name") is None:
        return None
    return Overdue(user.extras["overdue_plan_name"], user.extras["overdue_provider"])


def portal_url(user: User, gateway: PaymentGateway | None = None) -> ChangeResult:
    """Stripe's Billing Portal for ``user``, where cards are added, changed and removed."""
    gateway = gateway or default_gateway()
    if not gateway.runs_subscriptions:
        raise PlanChangeError("Card payments are not set up on this console; invoices are paid by bank transfer.")
    url = gateway.portal_url(user, absolute_url("billing.subscription"))
    return ChangeResult("Continue to Stripe to manage your payment methods.", redirect_url=url)


# --- refunds ----------------------------------------------------------------------------------


def refund_payment(payment: Payment, amount_cents: int, actor: User | None,
                   gateway: PaymentGateway | None = None) -> str:
    """Give back ``amount_cents`` of ``payment`` through the gateway that took it, audited; a message."""
    if payment.status != "succeeded":
        raise RefundError(f"Only a succeeded payment can be refunded; this one is {payment.status}.")
    if not 1 <= amount_cents <= payment.refundable_cents:
        raise RefundError(f"The refund must be between {money(1, payment.currency)} and "
                          f"{money(payment.refundable_cents, payment.currency)}.")
    try:
        refund_ref = (gateway or gateway_for(payment)).refund(payment, amount_cents)
    except GatewayError as error:
        raise RefundError(str(error)) from error
    before = payment.refunded_cents
    payment.refunded_cents = before + amount_cents
    changes = {"refunded_cents": [before, payment.refunded_cents], "amount_cents": amount_cents,
               "refund": refund_ref}
    if payment.refunded_cents == payment.amount_cents:
        changes["status"] = [payment.status, "refunded"]
        payment.status = "refunded"
    record("payment.refund", payment, changes, actor=actor)
    db.session.flush()
    return f"Refunded {money(amount_cents, payment.currency)} of {money(payment.amount_cents, payment.currency)} " \
           f"({refund_ref})."
