"""Billing: plans, subscriptions, payments, usage, and Stripe's customers, checkouts and events."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import joinedload
from wtforms import IntegerField, SelectField
from wtforms.validators import NumberRange, Optional, StopValidation, ValidationError

from webapp import quotas
from webapp.admin.base import USER_LOOKUP, SecureModelView, choice_filter, choices, lookup
from webapp.billing.models import (
    BILLING_INTERVALS, MANUAL, PAYMENT_STATUSES, STRIPE, SUBSCRIPTION_STATUSES, USAGE_METRICS, BillingCustomer,
    CheckoutSession, Payment, Plan, UsageAlert, UsageRecord, UserSubscription, WebhookEvent,
)
from webapp.metering.models import MeteringToken, UsageRollup
from webapp.db import utcnow

CATEGORY = "Billing"
CURRENCIES = ("USD", "EUR", "GBP")


class BillingView(SecureModelView):
    read_permission = "billing.read"
    write_permission = "billing.manage"


MAX_QUOTA_LIMIT = 10**15
MAX_OVERAGE_CENTS = 1_000_000
AT_LIMIT_CHOICES = [(quotas.BLOCK, "Block the work"), (quotas.OVERAGE, "Allow it and bill the overage")]
# The keys the metered-quota fields own; the "Other quotas" JSON holds everything else.
METERED_KEYS = frozenset(quotas.METERED_QUOTAS) | {"overage"}


class FormOnly:
    """A field the view reads in on_model_change; it is no column, so populating the model skips it."""

    def populate_obj(self, obj: Any, name: str) -> None:
        pass


class QuotaNumberField(FormOnly, IntegerField):
    pass


class QuotaChoiceField(FormOnly, SelectField):
    pass


def quota_of(field_name: str) -> str:
    """The metered quota a field belongs to: ``tokens_overage_per`` -> ``tokens``."""
    return next(key for key in quotas.METERED_QUOTAS if field_name.startswith(key + "_"))


def bills_overage(form: Any, field_name: str) -> bool:
    return form[f"{quota_of(field_name)}_at_limit"].data == quotas.OVERAGE


def overage_needs_limit(form: Any, field: Any) -> None:
    if field.data == quotas.OVERAGE and form[f"{quota_of(field.name)}_limit"].data is None:
        raise ValidationError("Set a limit: overage is what is used past it.")


def needed_for_overage(form: Any, field: Any) -> None:
    """Required when the quota bills overage; ignored (whatever was typed) when it blocks."""
    if not bills_overage(form, field.name):
        field.errors[:] = []
        raise StopValidation()
    if field.data is None:
        raise StopValidation("Required to bill overage." if not field.raw_data or not field.raw_data[0]
                             else "Enter a whole number.")


def metered_quota_fields() -> dict[str, Any]:
    """Per metered quota: its limit, what happens at it, and the overage price."""
    fields = {}
    for key in quotas.METERED_QUOTAS:
        label = quotas.QUOTA_LABELS[key]
        fields[f"{key}_limit"] = QuotaNumberField(
            f"{label}: limit per period", validators=[Optional(), NumberRange(0, MAX_QUOTA_LIMIT)],
            description="Leave empty for no limit.")
        fields[f"{key}_at_limit"] = QuotaChoiceField(
            f"{label}: at the limit", choices=AT_LIMIT_CHOICES, default=quotas.BLOCK,
            validators=[overage_needs_limit])
        fields[f"{key}_overage_per"] = QuotaNumberField(
            f"{label}: overage billed per", validators=[needed_for_overage, NumberRange(1, MAX_QUOTA_LIMIT)],
            description="Units per block; each block begun is billed in full (e.g. 1000 tokens).")
        fields[f"{key}_overage_cents"] = QuotaNumberField(
            f"{label}: overage price in cents", validators=[needed_for_overage, NumberRange(0, MAX_OVERAGE_CENTS)],
            description="In the plan's currency, for each block above.")
    return fields


def no_metered_keys(form: Any, field: Any) -> None:
    if not isinstance(field.data, dict):
        return  # the field has already said that it wants a JSON object
    taken = sorted(METERED_KEYS & set(field.data))
    if taken:
        raise ValidationError(f"Set {', '.join(taken)} in the metered quota fields, not here.")


class PlanView(BillingView):
    column_list = ("id", "code", "name", "price_cents", "currency", "billing_interval", "is_public",
                   "sort_order", "created_at")
    column_searchable_list = ("code", "name")
    column_filters = ("is_public", choice_filter(Plan.billing_interval, "Billing interval", BILLING_INTERVALS),
                      "created_at")
    column_default_sort = "sort_order"
    form_extra_fields = metered_quota_fields()
    form_columns = ("code", "name", "description", "price_cents", "currency", "billing_interval",
                    *form_extra_fields, "quotas", "features", "is_public", "sort_order", "stripe_price_id")
    column_labels = {"stripe_price_id": "Stripe price id"}
    column_descriptions = {"stripe_price_id": "The Stripe price (price_...) a card subscription to this plan is "
                                              "billed at, when Stripe is configured; empty: not sold by card."}
    form_choices = {"currency": choices(CURRENCIES), "billing_interval": choices(BILLING_INTERVALS)}
    form_args = {"quotas": {"label": "Other quotas", "validators": [no_metered_keys],
                            "description": 'JSON object, e.g. {"minions": 5, "training_jobs": 20}; '
                                           "a missing key is unlimited."}}

    def edit_form(self, obj: Plan | None = None):
        form = super().edit_form(obj)
        if obj is not None and not form.is_submitted():
            terms = quotas.Allowance(obj.quotas or {}, utcnow(), utcnow())
            for key in quotas.METERED_QUOTAS:
                price = terms.overage_price(key)
                form[f"{key}_limit"].data = terms.limit(key)
                form[f"{key}_at_limit"].data = terms.at_limit(key)
                form[f"{key}_overage_per"].data = price.per if price else None
                form[f"{key}_overage_cents"].data = price.cents if price else None
            form.quotas.data = {key: value for key, value in (obj.quotas or {}).items() if key not in METERED_KEYS}
        return form

    def on_model_change(self, form, model: Plan, is_created: bool) -> None:
        limits, overage = {}, {}
        for key in quotas.METERED_QUOTAS:
            if form[f"{key}_limit"].data is not None:
                limits[key] = form[f"{key}_limit"].data
            if form[f"{key}_at_limit"].data == quotas.OVERAGE:
                overage[key] = {"per": form[f"{key}_overage_per"].data, "cents": form[f"{key}_overage_cents"].data}
        # A new dict, so the audit trail sees the change.
        model.quotas = {**(form.quotas.data or {}), **limits, **({"overage": overage} if overage else {})}


class SubscriptionView(BillingView):
    column_list = ("id", "user", "plan", "status", "current_period_start", "current_period_end",
                   "cancel_at_period_end", "pending_plan")
    column_searchable_list = ("user.email", "provider_ref")
    column_filters = (choice_filter(UserSubscription.status, "Status", SUBSCRIPTION_STATUSES),
                      "plan.name",
                      "current_period_end", "created_at")
    form_columns = ("user", "plan", "status", "current_period_start", "current_period_end",
                    "cancel_at_period_end", "canceled_at", "pending_plan", "provider", "provider_ref",
                    "provider_customer_ref")
    form_choices = {"status": choices(SUBSCRIPTION_STATUSES), "provider": choices((MANUAL, STRIPE))}
    form_ajax_refs = {"user": USER_LOOKUP, "plan": lookup("name", "code"), "pending_plan": lookup("name", "code")}
    eager = (joinedload(UserSubscription.user), joinedload(UserSubscription.plan),
             joinedload(UserSubscription.pending_plan))


class PaymentView(BillingView):
    column_list = ("id", "user", "amount_cents", "refunded_cents", "currency", "status", "provider", "paid_at",
                   "created_at")
    column_searchable_list = ("user.email", "provider_ref", "description")
    column_filters = (choice_filter(Payment.status, "Status", PAYMENT_STATUSES), "paid_at", "created_at",
                      "user.email")
    column_export_list = ("id", "user.email", "amount_cents", "currency", "status", "description", "provider",
                          "provider_ref", "paid_at", "failure_reason", "created_at")
    column_details_exclude_list = ("idempotency_key",)
    can_export = True
    form_columns = ("user", "subscription", "amount_cents", "currency", "status", "description", "provider",
                    "provider_ref", "paid_at", "failure_reason")
    form_choices = {"currency": choices(CURRENCIES), "status": choices(PAYMENT_STATUSES)}
    form_ajax_refs = {"user": USER_LOOKUP, "subscription": lookup("provider_ref")}
    eager = (joinedload(Payment.user), joinedload(Payment.subscription).joinedload(UserSubscription.plan))


class UsageView(BillingView):
    """Usage as recorded through the metering path: read-only, so the daily rollup always matches it."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "user", "metric", "quantity", "model", "occurred_at", "event_id")
    column_searchable_list = ("user.email", "event_id")
    column_filters = (choice_filter(UsageRecord.metric, "Metric", USAGE_METRICS), "occurred_at", "user.email")
    column_default_sort = ("occurred_at", True)
    column_export_list = ("id", "user.email", "metric", "quantity", "model.name", "occurred_at", "event_id")
    can_export = True
    # The details page shows the subscription (with its plan's name) too; the list does not.
    eager = (joinedload(UsageRecord.user), joinedload(UsageRecord.model),
             joinedload(UsageRecord.subscription).joinedload(UserSubscription.plan))
    list_eager = (joinedload(UsageRecord.user), joinedload(UsageRecord.model))


class MeteringTokenView(BillingView):
    """The metering API's service tokens: created with their one-time value by `flask metering create-token`,
    renamed or disabled here (a disabled token is refused like an unknown one)."""

    allow_create = False
    column_list = ("id", "name", "is_active", "created_at")
    column_searchable_list = ("name",)
    column_filters = ("is_active", "created_at")
    form_columns = ("name", "is_active")


class UsageRollupView(BillingView):
    """The daily rollup the meters read, kept by the metering path (`flask metering verify` checks it)."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "user", "day", "starts_at", "metric", "quantity")
    column_searchable_list = ("user.email",)
    column_filters = (choice_filter(UsageRollup.metric, "Metric", USAGE_METRICS), "starts_at", "user.email")
    column_default_sort = ("starts_at", True)
    eager = (joinedload(UsageRollup.user),)


class UsageAlertView(BillingView):
    """Each 50/80/100% crossing recorded (and mailed) once per period; deleting one lets it be sent again."""

    allow_create = allow_edit = False
    column_list = ("id", "user", "quota_key", "threshold", "used", "quota_limit", "period_start", "dismissed_at")
    column_searchable_list = ("user.email",)
    column_filters = ("quota_key", "threshold", "period_start", "user.email")
    column_default_sort = ("id", True)
    eager = (joinedload(UsageAlert.user),)


class BillingCustomerView(BillingView):
    column_list = ("id", "user", "provider", "customer_ref", "created_at")
    column_searchable_list = ("user.email", "customer_ref")
    column_filters = ("provider", "created_at")
    form_columns = ("user", "provider", "customer_ref")
    form_choices = {"provider": choices((STRIPE,))}
    form_ajax_refs = {"user": USER_LOOKUP}
    eager = (joinedload(BillingCustomer.user),)


class CheckoutSessionView(BillingView):
    """Checkouts users were sent to; Stripe's webhook completes them, nobody edits them."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "user", "plan", "status", "session_ref", "created_at")
    column_searchable_list = ("user.email", "session_ref")
    column_filters = ("status", "created_at")
    column_default_sort = ("id", True)
    # The details page shows the subscription the checkout started too; the list does not.
    eager = (joinedload(CheckoutSession.user), joinedload(CheckoutSession.plan), joinedload(CheckoutSession.subscription))
    list_eager = (joinedload(CheckoutSession.user), joinedload(CheckoutSession.plan))


class WebhookEventView(BillingView):
    """Every event Stripe sent, as received, and what it did here."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "provider", "event_type", "event_ref", "occurred_at", "outcome", "created_at")
    column_details_list = ("id", "provider", "event_type", "event_ref", "occurred_at", "created_at", "outcome",
                           "payload")
    column_searchable_list = ("event_ref", "event_type")
    column_filters = ("event_type", "occurred_at", "created_at")
    column_default_sort = ("id", True)


def views() -> list[SecureModelView]:
    return [
        PlanView(Plan, "admin_plans", "Plans", CATEGORY),
        SubscriptionView(UserSubscription, "admin_user_subscriptions", "Subscriptions", CATEGORY),
        PaymentView(Payment, "admin_payments", "Payments", CATEGORY),
        UsageView(UsageRecord, "admin_usage_records", "Usage", CATEGORY),
        MeteringTokenView(MeteringToken, "admin_metering_tokens", "Metering tokens", CATEGORY),
        UsageRollupView(UsageRollup, "admin_usage_rollups", "Daily usage", CATEGORY),
        UsageAlertView(UsageAlert, "admin_usage_alerts", "Usage alerts", CATEGORY),
        BillingCustomerView(BillingCustomer, "admin_billing_customers", "Customers", CATEGORY),
        CheckoutSessionView(CheckoutSession, "admin_checkout_sessions", "Checkouts", CATEGORY),
        WebhookEventView(WebhookEvent, "admin_webhook_events", "Webhook events", CATEGORY),
    ]
