"""The admin home: the counts that matter, each linking to the list it summarises, and the latest audited actions."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask_admin import AdminIndexView, expose
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from webapp.accounts.models import User
from webapp.accounts.models import AuditEvent
from webapp.admin.base import SecureAccessMixin, details_url, may
from webapp.admin.fields import DATETIME_FORMAT
from webapp.billing.models import Payment, Plan, UserSubscription
from webapp.billing.services import money
from webapp.db import utcnow
from webapp.extensions import db
from webapp.training.models import JOB_STATUSES, TrainingJob


RECENT_ACTIONS = 10


@dataclass
class Tile:
    label: str
    value: str
    url: str


def since(moment) -> str:
    return moment.strftime(DATETIME_FORMAT)


class AdminHomeView(SecureAccessMixin, AdminIndexView):
    def view(self, endpoint: str):
        return next(v for v in self.admin._views if v.endpoint == endpoint)

    @expose("/")
    def index(self):
        sections = {}
        if may("users.read"):
            sections["Accounts"] = [self.new_users()]
        if may("billing.read"):
            sections["Billing"] = [self.revenue_this_month(), *self.subscriptions_by_plan()]
        if may("jobs.read_all"):
            sections["Training"] = [self.failed_jobs(), *self.jobs_by_status()]
        recent = self.recent_actions() if may("audit.read") else None
        return self.render("admin/minion/home.html", sections=sections, recent=recent)

    def recent_actions(self) -> list[tuple[AuditEvent, str | None]]:
        """The newest audit rows, each with the admin page of the record it is about (None if no view shows it)."""
        events = db.session.scalars(
            select(AuditEvent).options(joinedload(AuditEvent.actor)).order_by(AuditEvent.id.desc()).limit(RECENT_ACTIONS)
        ).all()
        return [(event, details_url(event.object_type, event.object_id)) for event in events]

    def new_users(self) -> Tile:
        week_ago = utcnow() - timedelta(days=7)
        count = db.session.scalar(select(func.count()).select_from(User).where(User.created_at >= week_ago))
        url = self.view("admin_users").filtered_list_url(created_at_greater_than=since(week_ago))
        return Tile("New users this week", f"{count:,}", url)

    def revenue_this_month(self) -> Tile:
        month_start = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        rows = db.session.execute(
            select(Payment.currency, func.sum(Payment.amount_cents))
            .where(Payment.status == "succeeded", Payment.paid_at >= month_start)
            .group_by(Payment.currency).order_by(Payment.currency)
        ).all()
        value = ", ".join(money(cents, currency) for currency, cents in rows) or money(0)
        url = self.view("admin_payments").filtered_list_url(status_equals="succeeded",
                                                            paid_at_greater_than=since(month_start))
        return Tile("Revenue this month", value, url)

    def subscriptions_by_plan(self) -> list[Tile]:
        rows = db.session.execute(
            select(Plan.name, func.count(UserSubscription.id))
            .join(UserSubscription, UserSubscription.plan_id == Plan.id)
            .where(UserSubscription.status == "active")
            .group_by(Plan.id, Plan.name, Plan.sort_order).order_by(Plan.sort_order)
        ).all()
        view = self.view("admin_user_subscriptions")
        return [Tile(f"Active on {name}", f"{count:,}",
                     view.filtered_list_url(status_equals="active", plan_plans_name_equals=name))
                for name, count in rows]

    def jobs_by_status(self) -> list[Tile]:
        counts = dict(db.session.execute(
            select(TrainingJob.status, func.count()).group_by(TrainingJob.status)
        ).all())
        view = self.view("admin_training_jobs")
        return [Tile(f"Jobs {status}", f"{counts.get(status, 0):,}", view.filtered_list_url(status_equals=status))
                for status in JOB_STATUSES]

    def failed_jobs(self) -> Tile:
        day_ago = utcnow() - timedelta(hours=24)
        count = db.session.scalar(select(func.count()).select_from(TrainingJob).where(
            TrainingJob.status == "failed", TrainingJob.finished_at >= day_ago))
        url = self.view("admin_training_jobs").filtered_list_url(status_equals="failed",
                                                                 finished_at_greater_than=since(day_ago))
        return Tile("Failed in the last 24 hours", f"{count:,}", url)
