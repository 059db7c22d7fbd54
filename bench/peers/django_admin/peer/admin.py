"""The admin pages, configured as a competent Django developer would for big tables.

Two sites over the same ModelAdmins: ``/admin/`` with Django's defaults for counting, and
``/admin-nocount/`` with ``show_full_result_count=False`` (no second COUNT(*) on filtered lists).
Lists show 20 rows, join their foreign keys (list_select_related), filter on choice columns and
search the same fields as the console's admin; change forms use raw ids instead of a <select>
of every user.
"""
from django.contrib import admin

from .models import Payment, TrainingJob, UsageRecord, User


class UserAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "display_name", "is_active", "email_verified_at", "last_login_at", "created_at")
    search_fields = ("email", "display_name")
    list_filter = ("is_active",)
    ordering = ("-id",)
    list_per_page = 20


class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "metric", "quantity", "occurred_at", "event_id")
    list_select_related = ("user",)
    search_fields = ("user__email", "event_id")
    list_filter = ("metric",)
    raw_id_fields = ("user",)
    ordering = ("-id",)
    list_per_page = 20


class PaymentAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "amount_cents", "refunded_cents", "currency", "status", "provider", "paid_at")
    list_select_related = ("user",)
    search_fields = ("user__email", "provider_ref", "description")
    list_filter = ("status",)
    raw_id_fields = ("user",)
    ordering = ("-id",)
    list_per_page = 20


class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "user", "status", "job_type", "minion", "progress", "queued_at", "finished_at")
    list_select_related = ("user", "minion")
    search_fields = ("name", "user__email", "external_job_id")
    list_filter = ("status",)
    raw_id_fields = ("user", "minion")
    ordering = ("-id",)
    list_per_page = 20


MODEL_ADMINS = {User: UserAdmin, UsageRecord: UsageRecordAdmin, Payment: PaymentAdmin, TrainingJob: TrainingJobAdmin}

nocount_site = admin.AdminSite(name="nocount")
for model, model_admin in MODEL_ADMINS.items():
    admin.site.register(model, model_admin)
    nocount_site.register(model, type(f"NoCount{model_admin.__name__}", (model_admin,), {"show_full_result_count": False}))
