"""Billing: plans, subscriptions, payments and usage."""
from __future__ import annotations

from sqlalchemy.orm import joinedload

from webapp.admin.base import USER_LOOKUP, SecureModelView, choice_filter, choices, lookup
from webapp.billing.models import (
    BILLING_INTERVALS, PAYMENT_STATUSES, SUBSCRIPTION_STATUSES, USAGE_METRICS, Payment, Plan, UsageRecord,
    UserSubscription,
)
from webapp.metering.models import MeteringToken

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
                    "features", "is_public", "sort_order")
    form_choices = {"currency": choices(CURRENCIES), "billing_interval": choices(BILLING_INTERVALS)}


class SubscriptionView(BillingView):
    column_list = ("id", "user", "plan", "status", "current_period_start", "current_period_end",
                   "cancel_at_period_end", "pending_plan")
    column_searchable_list = ("user.email", "provider_ref")
    column_filters = (choice_filter(UserSubscription.status, "Status", SUBSCRIPTION_STATUSES),
                      "plan.name",
                      "current_period_end", "created_at")
    form_columns = ("user", "plan", "status", "current_period_start", "current_period_end",
                    "cancel_at_period_end", "canceled_at", "pending_plan", "provider_ref")
    form_choices = {"status": choices(SUBSCRIPTION_STATUSES)}
    form_ajax_refs = {"user": USER_LOOKUP, "plan": lookup("name", "code"), "pending_plan": lookup("name", "code")}
    eager = (joinedload(UserSubscription.user), joinedload(UserSubscription.plan),
             joinedload(UserSubscription.pending_plan))


class PaymentView(BillingView):
    column_list = ("id", "user", "amount_cents", "currency", "status", "provider", "paid_at", "created_at")
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
    eager = (joinedload(UsageRecord.user), joinedload(UsageRecord.model))


class MeteringTokenView(BillingView):
    """The metering API's service tokens: created with their one-time value by `flask metering create-token`,
    renamed or disabled here (a disabled token is refused like an unknown one)."""

    allow_create = False
    column_list = ("id", "name", "is_active", "created_at")
    column_searchable_list = ("name",)
    column_filters = ("is_active",)
    form_columns = ("name", "is_active")


def views() -> list[SecureModelView]:
    return [
        PlanView(Plan, "admin_plans", "Plans", CATEGORY),
        SubscriptionView(UserSubscription, "admin_user_subscriptions", "Subscriptions", CATEGORY),
        PaymentView(Payment, "admin_payments", "Payments", CATEGORY),
        UsageView(UsageRecord, "admin_usage_records", "Usage", CATEGORY),
        MeteringTokenView(MeteringToken, "admin_metering_tokens", "Metering tokens", CATEGORY),
    ]
