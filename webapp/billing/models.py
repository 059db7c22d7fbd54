"""Plans, subscriptions (the only home of subscription state), payments and usage."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, String, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk, non_negative, trigram_index
from webapp.extensions import db
from webapp.metering.models import USAGE_METRICS

BILLING_INTERVALS = ("month", "year")
SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "canceled", "expired")
LIVE_SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due")
PAYMENT_STATUSES = ("pending", "succeeded", "failed", "refunded")
# The shares of a metered quota (in percent) whose crossing is announced, once per period each.
ALERT_THRESHOLDS = (50, 80, 100)
# Who runs a subscription's periods and collects its money: staff by invoice, or Stripe.
MANUAL, STRIPE = "manual_invoice", "stripe"
CHECKOUT_STATUSES = ("open", "completed")

_live_statuses_sql = "status IN ('trialing', 'active', 'past_due')"


class Plan(TimestampMixin, db.Model):
    __tablename__ = "plans"
    __table_args__ = (
        choice_check("billing_interval", BILLING_INTERVALS),
        non_negative("price_cents"),
        choice_check("currency", ("USD", "EUR", "GBP")),
    )

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(500), default="", server_default="")
    price_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    billing_interval: Mapped[str] = mapped_column(String(8), default="month", server_default="month")
    # e.g. {"tokens": 1000000, "training_jobs": 20, "minions": 5}; a missing key means unlimited.
    quotas: Mapped[dict[str, Any]] = mapped_column(default=dict)
    features: Mapped[list[Any]] = mapped_column(default=list)
    is_public: Mapped[bool] = mapped_column(default=True, server_default=true())
    sort_order: Mapped[int] = mapped_column(default=0, server_default="0")
    # The Stripe price (price_...) a card subscription to this plan is billed at; none: not sold by card.
    stripe_price_id: Mapped[str | None] = mapped_column(String(120), unique=True)

    def __str__(self) -> str:
        return self.name


class UserSubscription(TimestampMixin, db.Model):
    __tablename__ = "user_subscriptions"
    __table_args__ = (
        choice_check("status", SUBSCRIPTION_STATUSES),
        # At most one live subscription per user, enforced by the database.
        Index(
            "uq_user_subscriptions_one_live_per_user",
            "user_id",
            unique=True,
            sqlite_where=db.text(_live_statuses_sql),
            postgresql_where=db.text(_live_statuses_sql),
        ),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(fk("plans.id", "RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    current_period_start: Mapped[datetime]
    current_period_end: Mapped[datetime]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False, server_default=false())
    canceled_at: Mapped[datetime | None]
    # A downgrade waits here until the period ends; it can be called off until then.
    pending_plan_id: Mapped[int | None] = mapped_column(fk("plans.id", "SET NULL"), index=True)
    provider_ref: Mapped[str | None] = mapped_column(String(120), index=True)
    # MANUAL: the console rolls the periods and invoices; STRIPE: Stripe does, and its webhooks tell us.
    provider: Mapped[str] = mapped_column(String(32), default=MANUAL, server_default=MANUAL)
    provider_customer_ref: Mapped[str | None] = mapped_column(String(120))
    # The Stripe subscription schedule that carries a downgrade waiting for the period end.
    provider_schedule_ref: Mapped[str | None] = mapped_column(String(120))
    # When Stripe made the state last applied here (its event's ``created``): an older event changes nothing.
    provider_synced_at: Mapped[datetime | None]

    user = relationship("User", foreign_keys=[user_id])
    plan: Mapped[Plan] = relationship(foreign_keys=[plan_id])
    pending_plan: Mapped[Plan | None] = relationship(foreign_keys=[pending_plan_id])

    def __str__(self) -> str:
        return f"#{self.id} {self.plan.name if self.plan else ''} ({self.status})"


class Payment(TimestampMixin, db.Model):
    __tablename__ = "payments"
    __table_args__ = (
        choice_check("status", PAYMENT_STATUSES),
        non_negative("amount_cents"),
        non_negative("refunded_cents"),
        Index("ix_payments_user_id_created_at", "user_id", "created_at"),
        Index("ix_payments_status_created_at", "status", "created_at"),
        # The admin list's default order (newest first, id breaking ties), read one page at a time.
        Index("ix_payments_created_at_id", "created_at", "id"),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(
        fk("user_subscriptions.id", "SET NULL"), index=True
    )
    amount_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3), default="USD", server_default="USD")
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")
    provider: Mapped[str] = mapped_column(String(32), default="manual_invoice", server_default="manual_invoice")
    provider_ref: Mapped[str | None] = mapped_column(String(120), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    paid_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # What the amount is made of, when it is more than one thing (a renewal with overage):
    # [{"description": "...", "amount_cents": 500, "quota": "tokens", "quantity": 12000}, ...];
    # "quota" and "quantity" only on overage lines. Empty: the amount is the description alone.
    lines: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    # Stripe's pages of a paid invoice, and the payment intent a refund goes back through.
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(500))
    invoice_pdf_url: Mapped[str | None] = mapped_column(String(500))
    provider_charge_ref: Mapped[str | None] = mapped_column(String(120))
    # Given back so far; the status becomes "refunded" once it is the whole amount.
    refunded_cents: Mapped[int] = mapped_column(default=0, server_default="0")

    user = relationship("User", foreign_keys=[user_id])
    subscription: Mapped[UserSubscription | None] = relationship(foreign_keys=[subscription_id])

    @property
    def refundable_cents(self) -> int:
        return self.amount_cents - self.refunded_cents if self.status == "succeeded" else 0


trigram_index(Payment.provider_ref)
trigram_index(Payment.description)


class UsageRecord(TimestampMixin, db.Model):
    __tablename__ = "usage_records"
    __table_args__ = (
        choice_check("metric", USAGE_METRICS),
        non_negative("quantity"),
        Index("ix_usage_records_user_id_occurred_at", "user_id", "occurred_at"),
        # Time ranges, and the admin list's order (occurred_at, id): a deep page's ids come from this index alone.
        Index("ix_usage_records_occurred_at_id", "occurred_at", "id"),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"))
    subscription_id: Mapped[int | None] = mapped_column(
        fk("user_subscriptions.id", "SET NULL"), index=True
    )
    model_id: Mapped[int | None] = mapped_column(fk("models.id", "SET NULL"), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime]
    # The sender's idempotency key (the metering API's event id): an event sent again is not stored again.
    event_id: Mapped[str] = mapped_column(String(64), unique=True)

    user = relationship("User", foreign_keys=[user_id])
    subscription: Mapped[UserSubscription | None] = relationship(foreign_keys=[subscription_id])
    model = relationship("AIModel", foreign_keys=[model_id])


class UsageAlert(TimestampMixin, db.Model):
    """A metered quota's threshold crossed in one period: the row is the "sent once" guarantee."""

    __tablename__ = "usage_alerts"
    __table_args__ = (
        # Concurrent alert runs insert the same crossing; the database keeps one and mail follows the insert.
        UniqueConstraint("user_id", "period_start", "quota_key", "threshold"),
        CheckConstraint("threshold IN (50, 80, 100)", name="threshold_valid"),
        non_negative("used"),
        non_negative("quota_limit"),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    quota_key: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[int]
    # What was used of what limit when the crossing was seen.
    used: Mapped[int] = mapped_column(BigInteger)
    quota_limit: Mapped[int] = mapped_column(BigInteger)
    # The console's banner shows an alert until its user dismisses it (or its period ends).
    dismissed_at: Mapped[datetime | None]

    user = relationship("User", foreign_keys=[user_id])
class BillingCustomer(TimestampMixin, db.Model):
    """A user's customer record at a payment provider (Stripe's cus_...), made once and reused."""

    __tablename__ = "billing_customers"
    __table_args__ = (UniqueConstraint("provider", "customer_ref"),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    customer_ref: Mapped[str] = mapped_column(String(120))

    user = relationship("User", foreign_keys=[user_id])


class CheckoutSession(TimestampMixin, db.Model):
    """A hosted checkout a user was sent to; "completed" once Stripe's webhook confirms it."""

    __tablename__ = "checkout_sessions"
    __table_args__ = (choice_check("status", CHECKOUT_STATUSES),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(fk("plans.id", "RESTRICT"), index=True)
    session_ref: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    subscription_id: Mapped[int | None] = mapped_column(fk("user_subscriptions.id", "SET NULL"), index=True)

    user = relationship("User", foreign_keys=[user_id])
    plan: Mapped[Plan] = relationship(foreign_keys=[plan_id])
    subscription: Mapped[UserSubscription | None] = relationship(foreign_keys=[subscription_id])


class WebhookEvent(TimestampMixin, db.Model):
    """Each provider event received, stored in the transaction of its effect: a replay finds it and stops."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("provider", "event_ref"),)

    provider: Mapped[str] = mapped_column(String(32))
    event_ref: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(100), index=True)
    # When the provider made the event (its ``created``), which orders events that arrive out of order.
    occurred_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # What the event did here, for whoever reads the table: "applied", "ignored: ...".
    outcome: Mapped[str] = mapped_column(String(255), default="", server_default="")
