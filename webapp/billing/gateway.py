"""Payment collection behind one small interface: invoices paid by bank transfer, or cards through Stripe."""
from __future__ import annotations

import secrets
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from flask import current_app

from webapp.billing.models import MANUAL, Payment
from webapp.db import utcnow


@dataclass(frozen=True)
class Collection:
    """What a gateway did with a payment: its status now and the provider's reference."""

    status: str
    provider_ref: str | None


class GatewayError(Exception):
    """The payment provider refused or did not answer; nothing was changed here."""


class PaymentGateway(ABC):
    """Collects a payment row that the caller has added to the session (status pending)."""

    name: str
    # True when the provider runs subscriptions itself (checkout, periods, renewals), as Stripe does.
    runs_subscriptions = False

    @abstractmethod
    def collect(self, payment: Payment) -> Collection:
        """Start collecting ``payment``; update its provider fields and return the outcome."""

    @abstractmethod
    def refund(self, payment: Payment, amount_cents: int) -> str:
        """Give ``amount_cents`` of a succeeded payment back; the provider's reference of the refund."""


class ManualInvoiceGateway(PaymentGateway):
    """Issues an invoice to be paid by bank transfer; the payment stays pending until staff confirm it."""

    name = MANUAL

    def collect(self, payment: Payment) -> Collection:
        payment.provider = self.name
        payment.provider_ref = f"INV-{utcnow():%Y%m%d}-{secrets.token_hex(4).upper()}"
        # A retried request carries the key it was given; a new payment gets its own.
        payment.idempotency_key = payment.idempotency_key or f"manual-{uuid.uuid4().hex}"
        payment.status = "pending"
        return Collection(status=payment.status, provider_ref=payment.provider_ref)

    def refund(self, payment: Payment, amount_cents: int) -> str:
        # The money goes back the way it came, by bank transfer, which staff make; this is its credit note.
        return f"CN-{utcnow():%Y%m%d}-{secrets.token_hex(4).upper()}"


def stripe_configured() -> bool:
    config = current_app.config
    return bool(config.get("STRIPE_SECRET_KEY") and config.get("STRIPE_WEBHOOK_SECRET"))


def default_gateway() -> PaymentGateway:
    """Stripe when its secret key and webhook secret are set, else invoices paid by bank transfer."""
    if stripe_configured():
        from webapp.billing.stripe_gateway import StripeGateway

        return StripeGateway(current_app.config["STRIPE_SECRET_KEY"])
    return ManualInvoiceGateway()


def gateway_for(payment: Payment) -> PaymentGateway:
    """The gateway that collected ``payment``, which is the one that can give it back."""
    if payment.provider == MANUAL:
        return ManualInvoiceGateway()
    gateway = default_gateway()
    if gateway.name != payment.provider:
        raise GatewayError(f"This payment was made through {payment.provider}, which is not configured here.")
    return gateway
