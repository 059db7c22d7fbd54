"""Payment collection behind one small interface; a card provider can be added later."""
from __future__ import annotations

import secrets
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from webapp.billing.models import Payment
from webapp.db import utcnow


@dataclass(frozen=True)
class Collection:
    """What a gateway did with a payment: its status now and the provider's reference."""

    status: str
    provider_ref: str


class PaymentGateway(ABC):
    """Collects a payment row that the caller has added to the session (status pending)."""

    name: str

    @abstractmethod
    def collect(self, payment: Payment) -> Collection:
        """Start collecting ``payment``; update its provider fields and return the outcome."""


class ManualInvoiceGateway(PaymentGateway):
    """Issues an invoice to be paid by bank transfer; the payment stays pending until staff confirm it."""

    name = "manual_invoice"

    def collect(self, payment: Payment) -> Collection:
        payment.provider = self.name
        payment.provider_ref = f"INV-{utcnow():%Y%m%d}-{secrets.token_hex(4).upper()}"
        # A retried request carries the key it was given; a new payment gets its own.
        payment.idempotency_key = payment.idempotency_key or f"manual-{uuid.uuid4().hex}"
        payment.status = "pending"
        return Collection(status=payment.status, provider_ref=payment.provider_ref)


def default_gateway() -> PaymentGateway:
    return ManualInvoiceGateway()
