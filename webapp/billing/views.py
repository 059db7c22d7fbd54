"""Subscription management: the user's own page, and the same page for staff acting on a user's behalf."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import re

import stripe
from flask import abort, current_app, flash, jsonify, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from webapp.accounts.access import has_permission, login_required, permission_required
from webapp.accounts.models import User
from webapp.accounts.sessions import extend_signed_in_query
from webapp import quotas
from webapp.billing import alerts, bp, services, webhooks, webhooks_bp
from webapp.billing.gateway import GatewayError, stripe_configured
from webapp.billing.models import CheckoutSession, Payment
from webapp.billing.services import ChangeResult, PlanChangeError, RefundError
from webapp.billing.stripe_gateway import dashboard_url
from webapp.extensions import db
from webapp.htmx import is_htmx, navigate, render_page_or_block
from webapp.inputs import allow_larger_body
from webapp.pagination import page_args
from webapp.support.panels import PANEL_ROWS, user_panel

OWN_PREFIX = "/account/subscription"
STAFF_PREFIX = "/billing/users/<int:user_id>/subscription"
CONCURRENT_CHANGE = "This subscription was changed at the same moment by someone else; review it and try again."
AMOUNT_UNCONFIRMED = "The amount to pay was not confirmed; open the plan again and confirm the amount shown."
MAX_AMOUNT_DIGITS = 12
# A refund amount as typed: whole units, or units and cents ("12", "12.5", "12.50").
REFUND_AMOUNT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,2})?")

bp.add_app_template_filter(services.money, "money")
bp.add_app_template_filter(services.day_text, "day")
bp.add_app_template_filter(services.count_text, "count")
# The dunning banner's data comes with the signed-in user's own query, not one more per page.
extend_signed_in_query(services.overdue_columns)
bp.add_app_template_global(lambda: services.overdue_subscription(current_user), "overdue_subscription")
bp.add_app_template_global(
    lambda kind, ref: dashboard_url(kind, ref, current_app.config.get("STRIPE_SECRET_KEY")), "stripe_dashboard_url"
)


@bp.app_template_filter("quota_label")
def quota_label(key: str) -> str:
    return quotas.QUOTA_LABELS.get(key, key)



def subject_route(rule: str, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register ``view(subject, ...)`` twice: under /account/subscription for the signed-in
    user's own subscription, and under /billing/users/<id>/subscription for staff holding
    ``billing.manage``, who act on that user's behalf."""

    def decorator(view: Callable) -> Callable:
        def own(**kwargs):
            # Reading needs only the signed-in row; a change writes to the account, so it loads the User.
            subject = current_user.record() if request.method == "POST" else current_user._get_current_object()
            return view(subject, **kwargs)

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
    own = subject.id == current_user.id
    page = services.subscription_page(subject, own, current_app.config["PAGE_SIZE"])
    return {
        "subject": subject,
        "on_behalf": not own,
        "subscription_url": partial(subject_url, subject),
        **vars(page),
        "card_payments": stripe_configured(),
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
        panel = None
        if is_htmx() and not result.redirect_url:
            panel = render_page_or_block("billing/subscription.html", "subscription_panel",
                                         **page_context(subject, result.message))
        db.session.commit()
    except (PlanChangeError, GatewayError) as error:
        db.session.rollback()
        return refused(subject, str(error))
    except (StaleDataError, IntegrityError):
        # Two changes raced: the lock_version check or the one-live-subscription index refused this one.
        db.session.rollback()
        return refused(subject, CONCURRENT_CHANGE)
    if result.redirect_url:
        return leave_for(result.redirect_url, result.message)
    if panel is not None:
        return panel
    flash(result.message, "success")
    return redirect(subject_url(subject, "subscription"), 303)


def leave_for(url: str, message: str):
    """Send the browser to Stripe: HX-Redirect for HTMX; otherwise a page with the link, since a form's
    redirect to another site is blocked by the form-action policy."""
    if is_htmx():
        return navigate(url)
    return render_template("billing/leave.html", url=url, message=message)


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
        quote = services.quote_plan_code(subject, request.args.get("plan"))
    except PlanChangeError as error:
        return refused(subject, str(error))
    return render_page_or_block(
        "billing/plan_change.html", "confirmation", subject=subject, quote=quote, subscription=quote.subscription,
        subscription_url=partial(subject_url, subject),
        max_reference_length=services.MAX_REFERENCE_LENGTH,
    )


def confirmed_proration_date() -> int | None:
    """The moment Stripe's proration preview was priced at, when the confirmation carried one."""
    raw = request.form.get("proration_date", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_AMOUNT_DIGITS:
        raise PlanChangeError(AMOUNT_UNCONFIRMED)
    return int(raw)


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
            reference=request.form.get("reference", ""), proration_date=confirmed_proration_date(),
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
@subject_route("/payments/<int:payment_id>/invoice")
def payment_invoice(subject: User, payment_id: int):
    """A payment as a printable invoice of our own (Stripe's invoices have their own pages)."""
    payment = db.session.get(Payment, payment_id)
    if payment is None or payment.user_id != subject.id:
        abort(404)
    return render_template("billing/invoice.html", subject=subject, payment=payment,
                           subscription_url=partial(subject_url, subject))


@bp.get(OWN_PREFIX + "/checkout/return")
@login_required
def checkout_return():
    """Where Stripe Checkout sends the user back: "processing" until the webhook confirms, then the plan."""
    checkout = db.session.scalars(select(CheckoutSession).where(
        CheckoutSession.session_ref == request.args.get("session_id", ""),
        CheckoutSession.user_id == current_user.id,
    )).first()
    if checkout is None:
        abort(404)
    return render_page_or_block("billing/checkout_return.html", "checkout_status", checkout=checkout)


@bp.post(OWN_PREFIX + "/payment-methods")
@login_required
def payment_methods():
    """Open Stripe's Billing Portal, where the user adds, changes and removes cards."""
    user = current_user.record()
    return apply_change(user, lambda: services.portal_url(user))


def refund_page(payment: Payment, notice: str | None = None, status: int = 200):
    return make_response(render_template("billing/refund.html", payment=payment, notice=notice,
                                         amount=request.form.get("amount") or f"{payment.refundable_cents / 100:.2f}"),
                         status)


def refund_amount_cents() -> int:
    raw = request.form.get("amount", "").strip()
    if not REFUND_AMOUNT.fullmatch(raw):
        raise RefundError("Enter the amount to refund as a number such as 12.50.")
    units, _, cents = raw.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0") or 0)


@bp.route("/billing/payments/<int:payment_id>/refund", methods=("GET", "POST"))
@permission_required("billing.refund")
def payment_refund(payment_id: int):
    """Confirm, then refund all or part of a payment through the gateway that took it."""
    payment = db.session.get(Payment, payment_id) or abort(404)
    if request.method == "GET":
        return refund_page(payment)
    try:
        message = services.refund_payment(payment, refund_amount_cents(), actor=current_user)
        db.session.commit()
    except RefundError as error:
        db.session.rollback()
        return refund_page(db.session.get(Payment, payment_id), str(error), 422)
    except StaleDataError:
        db.session.rollback()
        return refund_page(db.session.get(Payment, payment_id), CONCURRENT_CHANGE, 422)
    flash(message, "success")
    if has_permission(current_user, "users.read"):
        return redirect(url_for("support.user_detail", user_id=payment.user_id), 303)
    return redirect(url_for("billing.user_subscription", user_id=payment.user_id), 303)


@webhooks_bp.post("/webhooks/stripe")
def stripe_webhook():
    """Stripe's events: signature checked, stored once by id with their effect, acknowledged."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        return jsonify(error="Not Found", detail="Stripe webhooks are not configured on this console."), 404
    payload = request.get_data()
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature", ""), secret,
                                       tolerance=current_app.config["STRIPE_WEBHOOK_TOLERANCE_SECONDS"])
        document = webhooks.event_document(payload)
    except (ValueError, stripe.SignatureVerificationError) as error:
        return jsonify(error="Bad Request", detail=f"Not a verified Stripe event: {error}"), 400
    try:
        outcome = webhooks.receive(document)
        db.session.commit()
    except IntegrityError:
        # A delivery of the same event committed first: this one is the replay.
        db.session.rollback()
        if not webhooks.already_received(document["id"]):
            raise
        outcome = "ignored: already received"
    except GatewayError as error:
        db.session.rollback()
        return jsonify(error="Bad Gateway", detail=str(error)), 502
    return jsonify(received=True, outcome=outcome)


def webhook_body_limit() -> tuple[int, str]:
    limit = current_app.config["STRIPE_WEBHOOK_MAX_BYTES"]
    return limit, f"A Stripe event is at most {limit} bytes."


allow_larger_body("billing_webhooks.stripe_webhook", webhook_body_limit)


@user_panel("billing/_support_panel.html", "billing.read", order=10)
def support_billing_panel(user: User) -> dict:
    """The subscription (live, else the last one) and the latest payments, on the support user page."""
    return {"subscription": services.live_or_last_subscription(user),
            "payments": services.payments_for(user, 1, PANEL_ROWS).items}
