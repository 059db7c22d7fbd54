"""Subscription management: the user's own page, and the same page for staff acting on a user's behalf."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.accounts.access import login_required, permission_required
from webapp.accounts.models import User
from webapp import quotas
from webapp.billing import alerts, bp, services
from webapp.billing.services import ChangeResult, PlanChangeError
from webapp.extensions import db
from webapp.htmx import is_htmx, render_page_or_block
from webapp.pagination import page_args
from webapp.support.panels import PANEL_ROWS, user_panel

OWN_PREFIX = "/account/subscription"
STAFF_PREFIX = "/billing/users/<int:user_id>/subscription"
CONCURRENT_CHANGE = "This subscription was changed at the same moment by someone else; review it and try again."
AMOUNT_UNCONFIRMED = "The amount to pay was not confirmed; open the plan again and confirm the amount shown."
MAX_AMOUNT_DIGITS = 12

bp.add_app_template_filter(services.money, "money")
bp.add_app_template_filter(services.day_text, "day")
bp.add_app_template_filter(services.count_text, "count")


@bp.app_template_filter("quota_label")
def quota_label(key: str) -> str:
    return quotas.QUOTA_LABELS.get(key, key)



def subject_route(rule: str, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register ``view(subject, ...)`` twice: under /account/subscription for the signed-in
    user's own subscription, and under /billing/users/<id>/subscription for staff holding
    ``billing.manage``, who act on that user's behalf."""

    def decorator(view: Callable) -> Callable:
        def own(**kwargs):
            return view(current_user._get_current_object(), **kwargs)

        def on_behalf(user_id: int, **kwargs):
            return view(db.session.get(User, user_id) or abort(404), **kwargs)

        own.__name__, on_behalf.__name__ = view.__name__, f"user_{view.__name__}"
        bp.add_url_rule(OWN_PREFIX + rule, view_func=login_required(own), methods=methods)
        bp.add_url_rule(STAFF_PREFIX + rule, view_func=permission_required("billing.manage")(on_behalf),
                        methods=methods)
        return view

    return decorator


def subject_url(subject: User, name: str, **values) -> str:
    """The URL of billing view ``name`` for ``subject``: their own, or the staff one."""
    if subject.id == current_user.id:
        return url_for(f"billing.{name}", **values)
    return url_for(f"billing.user_{name}", user_id=subject.id, **values)


def page_context(subject: User, notice: str | None = None, level: str = "success") -> dict:
    subscription = services.live_subscription(subject)
    meters = services.usage_meters(subject, subscription) if subscription else []
    return {
        "subject": subject,
        "on_behalf": subject.id != current_user.id,
        "subscription_url": partial(subject_url, subject),
        "subscription": subscription,
        "ended": services.latest_ended_subscription(subject) if subscription is None else None,
        "plans": services.public_plans(),
        "meters": meters,
        "fits": services.plan_that_fits(subscription, meters) if subscription else None,
        "usage_alerts": alerts.current_alerts(subject) if subject.id == current_user.id else [],
        "days": services.daily_usage(subject, subscription) if subscription else [],
        "payments": services.payments_for(subject, 1, current_app.config["PAGE_SIZE"]),
        "notice": notice,
        "level": level,
    }


def refused(subject: User, message: str):
    """The refusal shown in the page's notice area; nothing was changed."""
    if is_htmx():
        response = make_response(render_template("billing/_notice.html", notice=message, level="error"), 422)
        response.headers["HX-Retarget"] = "#billing-notice"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return make_response(
        render_template("billing/subscription.html", **page_context(subject, message, "error")), 422
    )


def apply_change(subject: User, change: Callable[[], ChangeResult]):
    """Run one change as one transaction; answer with the updated panel (HTMX) or a redirect.

    The panel is rendered inside the transaction, before the commit: once the change is
    saved nothing is left to fail, so no error page can claim a saved change was lost.
    """
    try:
        result = change()
        panel = render_page_or_block("billing/subscription.html", "subscription_panel",
                                     **page_context(subject, result.message)) if is_htmx() else None
        db.session.commit()
    except PlanChangeError as error:
        db.session.rollback()
        return refused(subject, str(error))
    except (StaleDataError, IntegrityError):
        # Two changes raced: the lock_version check or the one-live-subscription index refused this one.
        db.session.rollback()
        return refused(subject, CONCURRENT_CHANGE)
    if panel is not None:
        return panel
    flash(result.message, "success")
    return redirect(subject_url(subject, "subscription"), 303)


@subject_route("")
def subscription(subject: User):
    return render_page_or_block("billing/subscription.html", "subscription_panel", **page_context(subject))


@subject_route("/payments")
def payment_history(subject: User):
    page, per_page = page_args()
    return render_page_or_block(
        "billing/payments.html", "payment_history", subject=subject,
        payments=services.payments_for(subject, page, per_page),
        subscription_url=partial(subject_url, subject),
    )


@subject_route("/change")
def plan_change_confirm(subject: User):
    try:
        plan = services.plan_by_code(request.args.get("plan"))
        quote = services.quote_plan_change(subject, plan)
    except PlanChangeError as error:
        return refused(subject, str(error))
    return render_page_or_block(
        "billing/plan_change.html", "confirmation", subject=subject, quote=quote,
        subscription=services.live_subscription(subject),
        subscription_url=partial(subject_url, subject),
        max_reference_length=services.MAX_REFERENCE_LENGTH,
    )


def confirmed_amount() -> int:
    """The amount, in cents, that the confirmation page showed and the user confirmed: digits only."""
    raw = request.form.get("expected_amount_cents", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_AMOUNT_DIGITS:
        raise PlanChangeError(AMOUNT_UNCONFIRMED)
    return int(raw)


@subject_route("/change", methods=("POST",))
def plan_change(subject: User):
    def change() -> ChangeResult:
        plan = services.plan_by_code(request.form.get("plan"))
        return services.change_plan(
            subject, plan, actor=current_user, expected_amount_cents=confirmed_amount(),
            reference=request.form.get("reference", ""),
        )

    return apply_change(subject, change)


@subject_route("/downgrade/call-off", methods=("POST",))
def downgrade_call_off(subject: User):
    return apply_change(subject, lambda: services.call_off_downgrade(subject, actor=current_user))


@subject_route("/cancel", methods=("POST",))
def subscription_cancel(subject: User):
    return apply_change(subject, lambda: services.cancel_subscription(subject, actor=current_user))


@subject_route("/resume", methods=("POST",))
def subscription_resume(subject: User):
    return apply_change(subject, lambda: services.resume_subscription(subject, actor=current_user))


@bp.post("/account/usage-alerts/dismiss")
@login_required
def usage_alerts_dismiss():
    """Hide the usage alerts banner for the running period (HTMX: the banner goes; else back to the page)."""
    alerts.dismiss_alerts(current_user)
    db.session.commit()
    if is_htmx():
        return ""
    flash("The usage alerts are dismissed for this period.", "success")
    return redirect(url_for("billing.subscription"), 303)


@user_panel("billing/_support_panel.html", "billing.read", order=10)
def support_billing_panel(user: User) -> dict:
    """The subscription (live, else the last one) and the latest payments, on the support user page."""
    return {"subscription": services.live_subscription(user) or services.latest_ended_subscription(user),
            "payments": services.payments_for(user, 1, PANEL_ROWS).items}
