"""Card payments through Stripe, with the official ``stripe`` library.

Stripe runs a card subscription: Checkout starts it, Stripe renews and charges it, and its
webhooks (webapp/billing/webhooks.py) tell the console what happened. The console asks
Stripe for what only Stripe knows (a proration preview, a portal session) and sends it
changes (a plan, a schedule, ``cancel_at_period_end``, overage invoice items, refunds).
Every write carries an idempotency key where a retry could repeat it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import stripe
from sqlalchemy import select

from webapp.accounts.models import User
from webapp.billing.gateway import Collection, GatewayError, ManualInvoiceGateway, PaymentGateway
from webapp.billing.models import STRIPE, BillingCustomer, CheckoutSession, Payment, Plan, UserSubscription
from webapp.extensions import db

PLACEHOLDER_SESSION_ID = "{CHECKOUT_SESSION_ID}"


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def from_timestamp(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), timezone.utc)


def first_item(subscription: dict[str, Any]) -> dict[str, Any]:
    """A console subscription is one plan: the Stripe subscription's one item."""
    return subscription["items"]["data"][0]


class StripeGateway(PaymentGateway):
    name = STRIPE
    runs_subscriptions = True

    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key

    def call(self, operation, *args, **params) -> dict[str, Any]:
        """One Stripe request with this console's key, its answer as plain data; Stripe's refusal becomes
        a GatewayError saying why."""
        try:
            return operation(*args, api_key=self.secret_key, **params).to_dict()
        except stripe.StripeError as error:
            message = error.user_message or "Stripe did not answer."
            raise GatewayError(f"Stripe refused the request: {message} Nothing was changed.") from error

    # --- customers, checkout and the portal -------------------------------------------------

    def customer_ref(self, user: User) -> str:
        """The user's Stripe customer, made on first need (once: keyed by the user's id)."""
        customer = db.session.scalars(select(BillingCustomer).where(BillingCustomer.user_id == user.id)).first()
        if customer is None:
            made = self.call(stripe.Customer.create, email=user.email, name=user.display_name,
                             metadata={"user_id": str(user.id)}, idempotency_key=f"customer-{user.id}")
            customer = BillingCustomer(user_id=user.id, provider=STRIPE, customer_ref=made["id"])
            db.session.add(customer)
            db.session.flush()
        return customer.customer_ref

    def start_checkout(self, user: User, plan: Plan, return_url: str, cancel_url: str) -> tuple[CheckoutSession, str]:
        """A Checkout Session (subscription mode) for ``plan``; the row that waits for its webhook and the URL."""
        separator = "&" if "?" in return_url else "?"
        session = self.call(
            stripe.checkout.Session.create, mode="subscription", customer=self.customer_ref(user),
            line_items=[{"price": plan.stripe_price_id, "quantity": 1}],
            success_url=f"{return_url}{separator}session_id={PLACEHOLDER_SESSION_ID}", cancel_url=cancel_url,
            client_reference_id=str(user.id), metadata={"user_id": str(user.id), "plan": plan.code},
            subscription_data={"metadata": {"user_id": str(user.id), "plan": plan.code}},
        )
        checkout = CheckoutSession(user_id=user.id, plan=plan, session_ref=session["id"])
        db.session.add(checkout)
        db.session.flush()
        return checkout, session["url"]

    def portal_url(self, user: User, return_url: str) -> str:
        """A Billing Portal session where the user manages cards and sees Stripe's invoices."""
        session = self.call(stripe.billing_portal.Session.create, customer=self.customer_ref(user),
                            return_url=return_url)
        return session["url"]

    # --- plan changes of a Stripe subscription ----------------------------------------------

    def subscription(self, subscription_ref: str) -> dict[str, Any]:
        return self.call(stripe.Subscription.retrieve, subscription_ref)

    def preview_change(self, subscription: UserSubscription, plan: Plan, proration_date: int) -> int:
        """What moving to ``plan`` at ``proration_date`` charges now: Stripe's own proration invoice."""
        item = first_item(self.subscription(subscription.provider_ref))
        preview = self.call(
            stripe.Invoice.create_preview, customer=subscription.provider_customer_ref,
            subscription=subscription.provider_ref,
            subscription_details={"items": [{"id": item["id"], "price": plan.stripe_price_id}],
                                  "proration_behavior": "always_invoice", "proration_date": proration_date},
        )
        return int(preview["amount_due"])

    def change_now(self, subscription: UserSubscription, plan: Plan, proration_date: int) -> dict[str, Any]:
        """Move to ``plan`` at once, invoicing the proration previewed for ``proration_date``."""
        item = first_item(self.subscription(subscription.provider_ref))
        return self.call(
            stripe.Subscription.modify, subscription.provider_ref,
            items=[{"id": item["id"], "price": plan.stripe_price_id}],
            proration_behavior="always_invoice", proration_date=proration_date,
            idempotency_key=f"change-{subscription.provider_ref}-{plan.code}-{proration_date}",
        )

    def schedule_change(self, subscription: UserSubscription, plan: Plan) -> str:
        """A schedule that keeps the current price to the period end, then moves to ``plan`` and lets go."""
        stripe_subscription = self.subscription(subscription.provider_ref)
        item = first_item(stripe_subscription)
        schedule_ref = stripe_subscription.get("schedule")
        if not schedule_ref:
            schedule_ref = self.call(stripe.SubscriptionSchedule.create,
                                     from_subscription=subscription.provider_ref)["id"]
        self.call(
            stripe.SubscriptionSchedule.modify, schedule_ref, end_behavior="release",
            phases=[
                {"items": [{"price": item["price"]["id"], "quantity": 1}],
                 "start_date": item["current_period_start"], "end_date": item["current_period_end"]},
                {"items": [{"price": plan.stripe_price_id, "quantity": 1}],
                 "duration": {"interval": plan.billing_interval, "interval_count": 1}},
            ],
        )
        return schedule_ref

    def call_off_change(self, subscription: UserSubscription) -> None:
        """Release the schedule: the subscription stays on its current price."""
        if subscription.provider_schedule_ref:
            self.call(stripe.SubscriptionSchedule.release, subscription.provider_schedule_ref)

    def set_cancel_at_period_end(self, subscription: UserSubscription, cancel: bool) -> dict[str, Any]:
        if cancel:
            self.call_off_change(subscription)
        return self.call(stripe.Subscription.modify, subscription.provider_ref, cancel_at_period_end=cancel)

    # --- money ------------------------------------------------------------------------------

    def collect(self, payment: Payment) -> Collection:
        """On a Stripe subscription, add the payment's overage lines to its next Stripe invoice.

        Stripe charges the plan itself at renewal, so only overage lines become invoice items;
        each is keyed by the payment's idempotency key and the line's index, so collecting the
        same payment again adds nothing. Any other subscription is invoiced as before.
        """
        subscription = payment.subscription
        if subscription is None or subscription.provider != STRIPE:
            return ManualInvoiceGateway().collect(payment)
        payment.provider = self.name
        payment.status = "pending"
        payment.idempotency_key = payment.idempotency_key or f"stripe-{uuid.uuid4().hex}"
        db.session.flush()  # the payment's id goes into each invoice item, so invoice.paid finds it
        for index, line in enumerate(payment.lines or []):
            if "quota" not in line:
                continue
            self.call(
                stripe.InvoiceItem.create, customer=subscription.provider_customer_ref,
                subscription=subscription.provider_ref, amount=int(line["amount_cents"]),
                currency=payment.currency.lower(), description=line["description"],
                metadata={"payment_id": str(payment.id), "line": str(index), "quota": line["quota"],
                          "quantity": str(line["quantity"])},
                idempotency_key=f"{payment.idempotency_key}-line-{index}",
            )
        return Collection(status=payment.status, provider_ref=payment.provider_ref)

    def refund(self, payment: Payment, amount_cents: int) -> str:
        if not payment.provider_charge_ref:
            raise GatewayError("Stripe has not told us how this payment was charged, so it cannot be refunded here; "
                               "refund it in the Stripe dashboard.")
        refund = self.call(stripe.Refund.create, payment_intent=payment.provider_charge_ref, amount=amount_cents,
                           metadata={"payment_id": str(payment.id)},
                           idempotency_key=f"refund-{payment.id}-{payment.refunded_cents}-{amount_cents}")
        return refund["id"]


def dashboard_url(kind: str, ref: str, secret_key: str | None) -> str:
    """The Stripe dashboard page of a customer or subscription (the test-mode dashboard for a test key)."""
    test_mode = bool(secret_key) and "_test_" in secret_key
    return f"https://dashboard.stripe.com{'/test' if test_mode else ''}/{kind}/{ref}"
