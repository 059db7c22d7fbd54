"""Every page of the console and the admin, as concrete URLs per role on the demo data.

The whole-console browser tests (tests/browser/test_every_page.py) visit these. ``page_visits``
fails for a GET rule of ``app.url_map`` that is neither listed here nor named as not a page, so
a page added by any branch must say here how it is visited before the suite passes again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from sqlalchemy import select

from webapp.accounts.models import User
from webapp.accounts.profile import email_change_token
from webapp.accounts.sessions import start_session
from webapp.accounts.tokens import EMAIL_VERIFICATION, PASSWORD_RESET, issue_token
from webapp.billing.models import CheckoutSession, Payment, Plan
from webapp.billing.services import live_subscription
from webapp.datasets.models import Dataset
from webapp.extensions import db
from webapp.minions.models import Minion
from webapp.training.models import TrainingJob

# Which demo account each role signs in as (None: not signed in).
ACCOUNTS = {"anonymous": None, "user": "grace@demo.test", "support": "support@demo.test",
            "admin": "admin@demo.test"}

PHONE_BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")

# GET rules that are not pages a person looks at, with the reason.
NOT_PAGES = {
    "/static/<path:filename>": "files",
    "/admin/static/<path:filename>": "files",
    "/jobs/<int:job_id>/row": "an HTMX fragment of /jobs",
    "/datasets/<int:dataset_id>/download": "a file download",
    "/api/usage/allowance": "JSON for the metering API's service token",
}
NOT_PAGE_SUFFIXES = {
    "/export/<export_type>/": "a CSV download",
    "/ajax/lookup/": "JSON for the admin's searchable selects",
    "/history/": "an HTMX fragment of an admin record's details and edit pages",
}


@dataclass(frozen=True)
class Visit:
    role: str
    url: str


class Demo:
    """Ids of demo records, looked up once inside the live server's app context."""

    def user(self, email: str) -> User:
        return db.session.scalar(select(User).where(User.email == email))

    def job(self, email: str, status: str | None = None) -> TrainingJob:
        query = select(TrainingJob).where(TrainingJob.user_id == self.user(email).id)
        if status:
            query = query.where(TrainingJob.status == status)
        return db.session.scalars(query.order_by(TrainingJob.id)).first()

    def first_of(self, model, owner_column, email: str):
        """``email``'s first record of ``model`` (a minion, a dataset) by id."""
        return db.session.scalars(select(model).where(owner_column == self.user(email).id).order_by(model.id)).first()

    def payment(self, email: str) -> Payment:
        return db.session.scalars(select(Payment).where(Payment.user_id == self.user(email).id,
                                                        Payment.status == "succeeded").order_by(Payment.id)).first()

    def checkout(self, email: str) -> CheckoutSession:
        """A checkout ``email`` was sent to and Stripe has not confirmed yet (its return page says "processing")."""
        user = self.user(email)
        checkout = db.session.scalars(select(CheckoutSession).where(CheckoutSession.user_id == user.id)).first()
        if checkout is None:
            plan = db.session.scalars(select(Plan).where(Plan.is_public).order_by(Plan.sort_order.desc())).first()
            checkout = CheckoutSession(user_id=user.id, plan_id=plan.id, session_ref=f"cs_test_pages_{user.id}")
            db.session.add(checkout)
            db.session.flush()
        return checkout

    def plan_code_other_than_current(self, email: str) -> str:
        current = live_subscription(self.user(email))
        return db.session.scalars(select(Plan.code).where(Plan.is_public, Plan.id != current.plan_id)
                                  .order_by(Plan.sort_order)).first()


def console_pages(demo: Demo) -> dict[str, list[Visit]]:
    grace = demo.user("grace@demo.test")
    other_plan = demo.plan_code_other_than_current("grace@demo.test")
    # A second device, so session lists (and the admin's sessions table) have a row before anyone signs in.
    start_session(grace, "203.0.113.7", PHONE_BROWSER)
    reset = issue_token(grace, PASSWORD_RESET)
    verify = issue_token(demo.user("john.backus@demo.test"), EMAIL_VERIFICATION)
    email_change = email_change_token(grace, "grace.hopper@demo.test")
    job_pages = [Visit("user", f"/jobs/{demo.job('grace@demo.test', status).id}")
                 for status in ("running", "succeeded", "failed") if demo.job("grace@demo.test", status)]
    minion = demo.first_of(Minion, Minion.owner_user_id, "grace@demo.test")
    dataset = demo.first_of(Dataset, Dataset.owner_user_id, "grace@demo.test")
    payment = demo.payment("grace@demo.test")
    checkout = demo.checkout("grace@demo.test")
    db.session.commit()
    signed_in = [Visit(role, "/") for role in ("user", "support", "admin")]
    return {
        "/": signed_in,
        "/login": [Visit("anonymous", "/login")],
        "/password/forgot": [Visit("anonymous", "/password/forgot")],
        "/password/reset/<token>": [Visit("anonymous", f"/password/reset/{reset}"),
                                    Visit("anonymous", "/password/reset/not-a-token")],
        "/verify-email/<token>": [Visit("anonymous", f"/verify-email/{verify}")],
        "/account/email/confirm/<token>": [Visit("anonymous", f"/account/email/confirm/{email_change}")],
        "/account": [Visit(role, "/account") for role in ("user", "support", "admin")],
        "/account/providers": [Visit("user", "/account/providers")],
        "/account/subscription": [Visit("user", "/account/subscription")],
        "/account/subscription/payments": [Visit("user", "/account/subscription/payments")],
        "/account/subscription/change": [Visit("user", f"/account/subscription/change?plan={other_plan}")],
        "/billing/users/<int:user_id>/subscription": [Visit("admin", f"/billing/users/{grace.id}/subscription")],
        "/billing/users/<int:user_id>/subscription/payments": [
            Visit("admin", f"/billing/users/{grace.id}/subscription/payments")],
        "/billing/users/<int:user_id>/subscription/change": [
            Visit("admin", f"/billing/users/{grace.id}/subscription/change?plan={other_plan}")],
        "/account/subscription/payments/<int:payment_id>/invoice": [
            Visit("user", f"/account/subscription/payments/{payment.id}/invoice")],
        "/billing/users/<int:user_id>/subscription/payments/<int:payment_id>/invoice": [
            Visit("admin", f"/billing/users/{grace.id}/subscription/payments/{payment.id}/invoice")],
        "/account/subscription/checkout/return": [
            Visit("user", f"/account/subscription/checkout/return?session_id={checkout.session_ref}")],
        "/billing/payments/<int:payment_id>/refund": [Visit("support", f"/billing/payments/{payment.id}/refund")],
        "/jobs": [Visit("user", "/jobs"), Visit("admin", "/jobs")],
        "/jobs/<int:job_id>": job_pages,
        "/leaderboard": [Visit("user", "/leaderboard")],
        "/support/users": [Visit("support", "/support/users"), Visit("support", "/support/users?q=grace")],
        "/support/users/<int:user_id>": [Visit("support", f"/support/users/{grace.id}")],
        "/signup": [Visit("anonymous", "/signup")],
        "/signup/sent": [Visit("anonymous", "/signup/sent")],
        "/minions": [Visit("user", "/minions")],
        # The owner's page, and the public page another person sees.
        "/minions/<int:minion_id>": [Visit("user", f"/minions/{minion.id}"), Visit("admin", f"/minions/{minion.id}")],
        "/minions/<int:minion_id>/archive": [Visit("user", f"/minions/{minion.id}/archive")],
        "/minions/<int:minion_id>/delete": [Visit("user", f"/minions/{minion.id}/delete")],
        "/datasets": [Visit("user", "/datasets")],
        "/datasets/new": [Visit("user", "/datasets/new")],
        "/datasets/public": [Visit("user", "/datasets/public"), Visit("user", "/datasets/public?q=math")],
        "/datasets/<int:dataset_id>": [Visit("user", f"/datasets/{dataset.id}")],
        "/datasets/<int:dataset_id>/delete": [Visit("user", f"/datasets/{dataset.id}/delete")],
        "/jobs/new": [Visit("user", "/jobs/new")],
        "/jobs/workers": [Visit("admin", "/jobs/workers")],
    }


def admin_pages(app: Flask) -> dict[str, list[Visit]]:
    """The admin home, and every model view's list, create form, and first record's edit and details."""
    from webapp.admin.base import SecureModelView

    admin = app.extensions["admin"][0]
    pages = {"/admin/": [Visit("admin", "/admin/")]}
    for view in admin._views:
        if not isinstance(view, SecureModelView):
            pages[view.url + "/"] = [Visit("admin", view.url + "/")]
            continue
        first = db.session.scalar(select(view.model.id).order_by(view.model.id).limit(1))
        assert first is not None, f"the demo data has no {view.model.__tablename__} row to visit"
        pages[f"{view.url}/"] = [Visit("admin", f"{view.url}/")]
        pages[f"{view.url}/new/"] = [Visit("admin", f"{view.url}/new/")]
        pages[f"{view.url}/edit/"] = [Visit("admin", f"{view.url}/edit/?id={first}")]
        pages[f"{view.url}/details/"] = [Visit("admin", f"{view.url}/details/?id={first}")]
    return pages


SOURCES: list[Callable] = [lambda app: console_pages(Demo()), admin_pages]


def page_visits(app: Flask) -> list[Visit]:
    """Every visit, after checking that each GET rule of the app is covered."""
    with app.app_context():
        pages: dict[str, list[Visit]] = {}
        for source in SOURCES:
            pages.update(source(app))
    rules = {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    unknown = sorted(
        rule for rule in rules - set(pages)
        if rule not in NOT_PAGES and not any(rule.endswith(suffix) for suffix in NOT_PAGE_SUFFIXES)
    )
    assert not unknown, f"GET rules tests/browser/pages.py does not know how to visit: {unknown}"
    stale = sorted(set(pages) - rules)
    assert not stale, f"tests/browser/pages.py lists rules the app does not have: {stale}"
    return [visit for visits in pages.values() for visit in visits]
