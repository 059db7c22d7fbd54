"""Stripe's webhook events, applied to subscriptions and payments.

Each event is stored in ``webhook_events`` in the same transaction as its effect: a replay,
or a second delivery racing the first, meets the unique event id and changes nothing.
Subscription state carries the time Stripe made it, so an older ``customer.subscription.updated``
that arrives late does not roll a newer state back. Every change is audited with the event's
id, since no person made it.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from webapp.accounts.audit import record
from webapp.billing import services
from webapp.billing.gateway import GatewayError, default_gateway
from webapp.billing.models import (
    STRIPE, BillingCustomer, CheckoutSession, Payment, UserSubscription, WebhookEvent,
)
from webapp.billing.stripe_gateway import from_timestamp
from webapp.extensions import db

APPLIED = "applied"


@dataclass(frozen=True)
class Event:
    ref: str
    occurred_at: datetime


def already_received(event_ref: str) -> bool:
    return db.session.scalar(select(WebhookEvent.id).where(WebhookEvent.provider == STRIPE,
                                                           WebhookEvent.event_ref == event_ref)) is not None


def event_document(payload: bytes) -> dict[str, Any]:
    """A verified payload as the event it holds, once it shows what every event has; ValueError otherwise."""
    event = json.loads(payload)
    try:
        whole = (isinstance(event["id"], str) and 0 < len(event["id"]) <= 255 and isinstance(event["type"], str)
                 and len(event["type"]) <= 100 and isinstance(event["created"], int)
                 and isinstance(event["data"]["object"], dict))
    except (KeyError, TypeError):
        whole = False
    if not whole:
        raise ValueError("the event lacks its id, type, creation time or object")
    return event


def receive(document: dict[str, Any]) -> str:
    """Store the verified event ``document`` and apply it; what it did. The caller commits.

    A duplicate stored meanwhile makes the flush raise IntegrityError, which the caller answers as a replay.
    """
    services.take_sqlite_write_lock()
    if already_received(document["id"]):
        return "ignored: already received"
    event = Event(document["id"], from_timestamp(document["created"]))
    stored = WebhookEvent(provider=STRIPE, event_ref=event.ref, event_type=document["type"],
                          occurred_at=event.occurred_at, payload=document)
    db.session.add(stored)
    db.session.flush()
    handler = HANDLERS.get(document["type"])
    stored.outcome = handler(document["data"]["object"], event) if handler else "ignored: not an event the console acts on"
    return stored.outcome


def audit(action: str, target, changes: dict, event: Event) -> None:
    record(action, target, {**changes, "stripe_event": event.ref}, actor=None)


def local_subscription(subscription_ref: str | None) -> UserSubscription | None:
    if not subscription_ref:
        return None
    return db.session.scalars(select(UserSubscription).where(UserSubscription.provider == STRIPE,
                                                             UserSubscription.provider_ref == subscription_ref)).first()


# --- subscriptions ---------------------------------------------------------------------------


def checkout_completed(session: dict[str, Any], event: Event) -> str:
    """The user paid at Checkout: their card subscription starts, replacing any subscription they had."""
    checkout = db.session.scalars(select(CheckoutSession).where(CheckoutSession.session_ref == session["id"])).first()
    if checkout is None:
        return "ignored: no checkout session here has this id"
    if checkout.status == "completed":
        return "ignored: the checkout was already completed"
    gateway = default_gateway()
    if not gateway.runs_subscriptions:
        raise GatewayError("Stripe's secret key is not configured, so the new subscription cannot be read.")
    stripe_subscription = gateway.subscription(session["subscription"])
    user = checkout.user
    previous = services.live_subscription(user)
    if previous is not None:
        audit("subscription.replaced", previous,
              {"status": [previous.status, "canceled"], "by_stripe_subscription": stripe_subscription["id"]}, event)
        previous.status = "canceled"
        previous.canceled_at = event.occurred_at
        db.session.flush()
    subscription = UserSubscription(
        user=user, plan=checkout.plan, status="active", provider=STRIPE, provider_ref=stripe_subscription["id"],
        provider_customer_ref=session["customer"], current_period_start=event.occurred_at,
        current_period_end=event.occurred_at,
    )
    db.session.add(subscription)
    services.sync_stripe_subscription(subscription, stripe_subscription, event.occurred_at)
    db.session.flush()
    user.current_subscription_id = subscription.id
    checkout.status, checkout.subscription = "completed", subscription
    audit("subscription.start", subscription,
          {"plan": subscription.plan.code, "status": subscription.status, "checkout": checkout.session_ref}, event)
    return APPLIED


def subscription_updated(stripe_subscription: dict[str, Any], event: Event) -> str:
    subscription = local_subscription(stripe_subscription["id"])
    if subscription is None:
        return "ignored: no subscription here has this Stripe id"
    if subscription.provider_synced_at is not None and event.occurred_at < subscription.provider_synced_at:
        return "ignored: older than the state already applied"
    changes = services.sync_stripe_subscription(subscription, stripe_subscription, event.occurred_at)
    if changes:
        audit("subscription.synced", subscription, changes, event)
    return APPLIED


def subscription_deleted(stripe_subscription: dict[str, Any], event: Event) -> str:
    """The subscription ended at Stripe (cancelled, or Stripe gave up collecting): final, whatever came before."""
    subscription = local_subscription(stripe_subscription["id"])
    if subscription is None:
        return "ignored: no subscription here has this Stripe id"
    changes = services.sync_stripe_subscription(subscription, stripe_subscription, event.occurred_at)
    if changes:
        audit("subscription.end", subscription, changes, event)
    return APPLIED


# --- invoices --------------------------------------------------------------------------------


def invoice_subscription_ref(invoice: dict[str, Any]) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def payment_intent_ref(invoice: dict[str, Any]) -> str | None:
    for entry in (invoice.get("payments") or {}).get("data", []):
        intent = (entry.get("payment") or {}).get("payment_intent")
        if intent:
            return intent
    return None


def invoice_payment(invoice: dict[str, Any], user_id: int) -> Payment:
    """The payment row of ``invoice``: already known by its id, the renewal whose overage it bills, or a new one."""
    payment = db.session.scalars(select(Payment).where(Payment.provider_ref == invoice["id"])).first()
    if payment is None:
        claimed = {int(line["metadata"]["payment_id"]) for line in invoice.get("lines", {}).get("data", [])
                   if (line.get("metadata") or {}).get("payment_id", "").isdigit()}
        payment = db.session.scalars(select(Payment).where(Payment.id.in_(claimed), Payment.user_id == user_id,
                                                           Payment.provider_ref.is_(None))).first()
    if payment is None:
        payment = Payment(user_id=user_id, amount_cents=0, lines=[
            {"description": line.get("description") or "", "amount_cents": int(line.get("amount") or 0)}
            for line in invoice.get("lines", {}).get("data", [])
        ])
        db.session.add(payment)
    payment.provider = STRIPE
    payment.provider_ref = invoice["id"]
    payment.currency = invoice["currency"].upper()
    payment.description = (payment.description or invoice.get("description")
                           or f"Stripe invoice {invoice.get('number') or invoice['id']}")[:255]
    payment.subscription = local_subscription(invoice_subscription_ref(invoice)) or payment.subscription
    return payment


def invoice_user_id(invoice: dict[str, Any]) -> int | None:
    return db.session.scalar(select(BillingCustomer.user_id).where(BillingCustomer.provider == STRIPE,
                                                                   BillingCustomer.customer_ref == invoice["customer"]))


def invoice_paid(invoice: dict[str, Any], event: Event) -> str:
    """Paid: the payment succeeds with Stripe's invoice pages, and a past-due subscription recovers."""
    user_id = invoice_user_id(invoice)
    if user_id is None:
        return "ignored: no customer here has this Stripe id"
    payment = invoice_payment(invoice, user_id)
    before = payment.status if payment.id else None
    payment.status = "succeeded"
    payment.amount_cents = int(invoice["amount_paid"])
    payment.paid_at = from_timestamp((invoice.get("status_transitions") or {}).get("paid_at")) or event.occurred_at
    payment.failure_reason = None
    payment.hosted_invoice_url = invoice.get("hosted_invoice_url")
    payment.invoice_pdf_url = invoice.get("invoice_pdf")
    payment.provider_charge_ref = payment_intent_ref(invoice) or payment.provider_charge_ref
    db.session.flush()
    audit("payment.succeeded", payment, {"status": [before, "succeeded"],
                                         "amount_cents": payment.amount_cents, "invoice": invoice["id"]}, event)
    subscription = payment.subscription
    if subscription is not None and subscription.status == "past_due":
        subscription.status = "active"
        audit("subscription.recovered", subscription, {"status": ["past_due", "active"]}, event)
    return APPLIED


def invoice_payment_failed(invoice: dict[str, Any], event: Event) -> str:
    """A charge failed: the payment says why, and the subscription is past due until one succeeds."""
    user_id = invoice_user_id(invoice)
    if user_id is None:
        return "ignored: no customer here has this Stripe id"
    payment = invoice_payment(invoice, user_id)
    if payment.status == "succeeded":
        return "ignored: the invoice is already paid"
    payment.status = "failed"
    payment.amount_cents = int(invoice.get("amount_due") or 0)
    retry = from_timestamp(invoice.get("next_payment_attempt"))
    payment.failure_reason = (f"The card payment failed (attempt {invoice.get('attempt_count') or 1}); "
                              + (f"Stripe tries again on {services.day_text(retry)}." if retry
                                 else "Stripe will not try again."))
    db.session.flush()
    audit("payment.failed", payment, {"status": "failed", "invoice": invoice["id"],
                                      "attempt": invoice.get("attempt_count")}, event)
    subscription = payment.subscription
    status = subscription.status if subscription is not None else None
    if subscription is not None and services.mark_past_due(subscription):
        audit("subscription.past_due", subscription, {"status": [status, "past_due"]}, event)
    return APPLIED


HANDLERS: dict[str, Callable[[dict[str, Any], Event], str]] = {
    "checkout.session.completed": checkout_completed,
    "customer.subscription.updated": subscription_updated,
    "customer.subscription.deleted": subscription_deleted,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
}
