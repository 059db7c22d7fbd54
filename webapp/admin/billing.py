"""Billing: plans, subscriptions, payments, usage, and Stripe's customers, checkouts and events."""
from __future__ import annotations

from sqlalchemy.orm import joinedload

from webapp.admin.base import USER_LOOKUP, SecureModelView, choice_filter, choices, lookup
from webapp.billing.models import (
    BILLING_INTERVALS, MANUAL, PAYMENT_STATUSES, STRIPE, SUBSCRIPTION_STATUSES, USAGE_METRICS, BillingCustomer,
    CheckoutSession, Payment, Plan, UsageRecord, UserSubscription, WebhookEvent,
)

CATEGORY = "Billing"
CURRENCIES = ("USD", "EUR", "GBP")


class BillingView(SecureModelView):
    read_permission = "billing.read"
    write_permission = "billing.manage"


class PlanView(BillingView):
    column_list = ("id", "code", "name", "price_cents", "currency", "billing_interval", "is_public",
                   "sort_order", "created_at")
    column_searchable_list = ("code", "name")
    column_filters = ("is_public", choice_filter(Plan.billing_interval, "Billing interval", BILLING_INTERVALS),
                      "created_at")
    column_default_sort = "sort_order"
    form_columns = ("code", "name", "description", "price_cents", "currency", "billing_interval", "quotas",
                    "features", "is_public", "sort_order", "stripe_price_id")
    column_labels = {"stripe_price_id": "Stripe price id"}
    column_descriptions = {"stripe_price_id": "The Stripe price (price_...) a card subscription to this plan is "
                                              "billed at, when Stripe is configured; empty: not sold by card."}
    form_choices = {"currency": choices(CURRENCIES), "billing_interval": choices(BILLING_INTERVALS)}


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
    column_list = ("id", "user", "metric", "quantity", "model", "occurred_at")
    column_searchable_list = ("user.email",)
    column_filters = (choice_filter(UsageRecord.metric, "Metric", USAGE_METRICS), "occurred_at", "user.email")
    column_default_sort = ("occurred_at", True)
    column_export_list = ("id", "user.email", "metric", "quantity", "model.name", "occurred_at")
    can_export = True
    form_columns = ("user", "subscription", "model", "metric", "quantity", "occurred_at")
    form_choices = {"metric": choices(USAGE_METRICS)}
    form_ajax_refs = {"user": USER_LOOKUP, "subscription": lookup("provider_ref"),
                      "model": lookup("name", "model_key")}
    eager = (joinedload(UsageRecord.user), joinedload(UsageRecord.model))


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
    eager = (joinedload(CheckoutSession.user), joinedload(CheckoutSession.plan))


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
        BillingCustomerView(BillingCustomer, "admin_billing_customers", "Customers", CATEGORY),
        CheckoutSessionView(CheckoutSession, "admin_checkout_sessions", "Checkouts", CATEGORY),
        WebhookEventView(WebhookEvent, "admin_webhook_events", "Webhook events", CATEGORY),
    ]
