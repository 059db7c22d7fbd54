"""Card payments through Stripe, against a fake Stripe on this machine: checkout, prorated upgrades at the
amount Stripe previews, schedules, cancel and resume, the portal, overage invoice items and refunds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from tests.billing.stripe_events import deliver, event
from tests.conftest import login
from tests.factories import make_payment, make_plan, make_subscription, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing import services, webhooks
from webapp.billing.gateway import ManualInvoiceGateway, default_gateway
from webapp.billing.models import STRIPE, BillingCustomer, CheckoutSession, Payment, UserSubscription
from webapp.billing.services import PlanChangeError, RefundError
from webapp.billing.stripe_gateway import StripeGateway, from_timestamp
from webapp.db import utcnow

HTMX = {"HX-Request": "true"}


def card_subscriber(fake_stripe, plan, user=None):
    """A user whose Stripe subscription to ``plan`` was started through Checkout and confirmed."""
    user = user or make_user()
    gateway = default_gateway()
    checkout, _url = gateway.start_checkout(user, plan, "http://console.test/return", "http://console.test/")
    session = fake_stripe.complete_checkout(checkout.session_ref)
    webhooks.receive(event("checkout.session.completed", session))
    return user, services.live_subscription(user)


def audit_actions(target) -> list[str]:
    return list(services.db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == target.__tablename__, AuditEvent.object_id == target.id).order_by(AuditEvent.id)))


def test_without_a_secret_key_the_console_keeps_invoicing_by_hand(app, db_session):
    assert isinstance(default_gateway(), ManualInvoiceGateway)


def test_with_stripe_configured_the_gateway_is_stripe(fake_stripe, db_session):
    assert isinstance(default_gateway(), StripeGateway)


def test_starting_a_paid_plan_goes_through_checkout_and_changes_nothing_until_stripe_confirms(
        client, card_plans, fake_stripe, db_session):
    user = make_user()
    login(client, user)
    confirmation = client.get("/account/subscription/change?plan=pro", headers=HTMX).get_data(as_text=True)
    assert "Stripe's secure checkout" in confirmation and "Continue to payment" in confirmation
    response = client.post("/account/subscription/change", headers=HTMX,
                           data={"plan": "pro", "expected_amount_cents": "2900"})
    (session_ref,) = fake_stripe.sessions
    assert response.status_code == 204 and response.headers["HX-Redirect"] == fake_stripe.sessions[session_ref]["url"]
    (params,) = fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert params["mode"] == "subscription" and params["line_items"] == [
        {"price": card_plans["pro"].stripe_price_id, "quantity": "1"}]
    assert params["success_url"] == "http://console.test/account/subscription/checkout/return?session_id=" \
                                    "{CHECKOUT_SESSION_ID}"
    customer = db_session.scalars(select(BillingCustomer).where(BillingCustomer.user_id == user.id)).one()
    assert params["customer"] == customer.customer_ref and fake_stripe.customers[customer.customer_ref]["email"] == \
        user.email
    assert services.live_subscription(user) is None, "nothing starts before Stripe's webhook"
    # Without HTMX the form's answer is a page with the link: a cross-site redirect would break form-action.
    page = client.post("/account/subscription/change", data={"plan": "pro", "expected_amount_cents": "2900"})
    assert page.status_code == 200 and "Continue to Stripe" in page.get_data(as_text=True)
    assert len(fake_stripe.calls("POST", "/v1/customers")) == 1, "the customer is made once and reused"


def test_checkout_return_shows_processing_until_the_webhook_then_the_plan(client, card_plans, fake_stripe,
                                                                           db_session):
    user = make_user()
    old = make_subscription(user, card_plans["free"])
    login(client, user)
    client.post("/account/subscription/change", headers=HTMX, data={"plan": "team", "expected_amount_cents": "9900"})
    (session_ref,) = fake_stripe.sessions
    url = f"/account/subscription/checkout/return?session_id={session_ref}"
    waiting = client.get(url).get_data(as_text=True)
    assert "Processing your payment for the Team plan" in waiting and 'hx-trigger="every 2s"' in waiting
    session = fake_stripe.complete_checkout(session_ref)
    assert deliver(client, event("checkout.session.completed", session)).status_code == 200
    done = client.get(url, headers=HTMX).get_data(as_text=True)
    assert "You are now on the Team plan" in done and "hx-trigger" not in done and "<html" not in done
    subscription = services.live_subscription(user)
    assert (subscription.plan.code, subscription.provider, subscription.provider_ref) == \
        ("team", STRIPE, session["subscription"])
    stripe_item = fake_stripe.subscriptions[session["subscription"]]["items"]["data"][0]
    assert subscription.current_period_end == from_timestamp(stripe_item["current_period_end"])
    db_session.refresh(old)
    db_session.refresh(user)
    assert old.status == "canceled" and user.current_subscription_id == subscription.id
    assert "subscription.replaced" in audit_actions(old)
    someone_else = client.application.test_client()
    login(someone_else, make_user())
    assert someone_else.get(url).status_code == 404, "a checkout is only its owner's"


def test_an_upgrade_confirms_stripes_proration_preview_and_is_charged_exactly_that(
        client, card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    stripe_item = fake_stripe.subscriptions[subscription.provider_ref]["items"]["data"][0]
    stripe_item["current_period_start"] -= 10 * 24 * 3600  # ten days into the period
    stripe_item["current_period_end"] -= 10 * 24 * 3600
    login(client, user)
    fragment = client.get("/account/subscription/change?plan=team", headers=HTMX).get_data(as_text=True)
    preview = fake_stripe.calls("POST", "/v1/invoices/create_preview")[-1]
    proration_date = int(preview["subscription_details"]["proration_date"])
    remaining = (stripe_item["current_period_end"] - proration_date) / (30 * 24 * 3600)
    expected = round(9900 * remaining) - round(2900 * remaining)
    assert f'name="expected_amount_cents" value="{expected}"' in fragment
    assert f'name="proration_date" value="{proration_date}"' in fragment and "invoice preview" in fragment
    response = client.post("/account/subscription/change", headers=HTMX, data={
        "plan": "team", "expected_amount_cents": str(expected), "proration_date": str(proration_date)})
    assert response.status_code == 200 and "You are now on the Team plan" in response.get_data(as_text=True)
    (change,) = [params for params in fake_stripe.calls("POST", f"/v1/subscriptions/{subscription.provider_ref}")]
    assert change["proration_behavior"] == "always_invoice" and change["proration_date"] == str(proration_date)
    charged = [invoice for invoice in fake_stripe.invoices.values() if invoice["billing_reason"] == "subscription_update"]
    assert [invoice["amount_paid"] for invoice in charged] == [expected], "the amount confirmed is the amount charged"
    db_session.expire_all()
    assert services.live_subscription(user).plan.code == "team"


@pytest.mark.parametrize("target, amount_cents, message", [
    ("plus", 3500, "You are now on the Plus plan. Stripe charges €35.00 to your card."),
    ("twin", 0, "You are now on the Twin plan."),
])
def test_a_stripe_upgrade_applies_stripes_state_at_the_proration_date_and_audits_the_amount(
        fake_stripe, db_session, target, amount_cents, message):
    plans = {code: make_plan(code, cents, currency="EUR", stripe_price_id=fake_stripe.add_price(cents, "eur"))
             for code, cents in (("basic", 2900), ("plus", 9900), ("twin", 2900))}
    user, subscription = card_subscriber(fake_stripe, plans["basic"])
    proration_date = int(utcnow().timestamp())
    stripe_item = fake_stripe.subscriptions[subscription.provider_ref]["items"]["data"][0]
    # Half the period left: half of the €70 difference, or nothing between plans of one price.
    stripe_item["current_period_start"] = proration_date - 15 * 24 * 3600
    stripe_item["current_period_end"] = proration_date + 15 * 24 * 3600

    result = services.change_plan(user, plans[target], actor=user, expected_amount_cents=amount_cents,
                                  proration_date=proration_date)

    assert result.message == message
    assert subscription.plan.code == target
    assert subscription.provider_synced_at == datetime.fromtimestamp(proration_date, timezone.utc)
    (upgrade,) = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "subscription.upgrade"))
    assert (upgrade.object_type, upgrade.object_id, upgrade.actor_id) == ("user_subscriptions", subscription.id,
                                                                          user.id)
    assert upgrade.changes == {"plan": ["basic", target], "amount_cents": amount_cents,
                               "stripe_subscription": subscription.provider_ref}


def test_an_upgrade_confirmed_for_another_amount_or_an_old_preview_is_refused(client, card_plans, fake_stripe,
                                                                              db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    login(client, user)
    now = int(utcnow().timestamp())
    for data, message in (({"expected_amount_cents": "1"}, "The amount due is now"),
                          ({"expected_amount_cents": "0", "proration_date": str(now - 3 * 3600)}, "has expired")):
        response = client.post("/account/subscription/change", headers=HTMX, data={"plan": "team", **data})
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert not fake_stripe.calls("POST", f"/v1/subscriptions/{subscription.provider_ref}")
    assert services.live_subscription(user).plan.code == "pro"


def test_a_downgrade_is_a_schedule_at_stripe_and_calling_it_off_releases_it(card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["team"])
    services.change_plan(user, card_plans["pro"], expected_amount_cents=0)
    stripe_subscription = fake_stripe.subscriptions[subscription.provider_ref]
    schedule = fake_stripe.schedules[subscription.provider_schedule_ref]
    assert stripe_subscription["schedule"] == schedule["id"] and schedule["end_behavior"] == "release"
    assert [phase["items"][0]["price"] for phase in schedule["phases"]] == [
        card_plans["team"].stripe_price_id, card_plans["pro"].stripe_price_id]
    assert schedule["phases"][0]["end_date"] == str(stripe_subscription["items"]["data"][0]["current_period_end"])
    assert subscription.pending_plan.code == "pro" and subscription.plan.code == "team"
    services.call_off_downgrade(user)
    assert schedule["status"] == "released" and stripe_subscription["schedule"] is None
    assert subscription.pending_plan is None and subscription.provider_schedule_ref is None
    with pytest.raises(PlanChangeError, match="cancel the subscription"):
        services.quote_plan_change(user, card_plans["free"])


def test_cancel_and_resume_set_cancel_at_period_end_at_stripe(card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["team"])
    stripe_subscription = fake_stripe.subscriptions[subscription.provider_ref]
    services.change_plan(user, card_plans["pro"], expected_amount_cents=0)
    assert subscription.provider_schedule_ref is not None
    services.cancel_subscription(user)
    assert stripe_subscription["cancel_at_period_end"] is True and subscription.cancel_at_period_end
    assert subscription.pending_plan is None and subscription.provider_schedule_ref is None, "nothing follows"
    services.resume_subscription(user)
    assert stripe_subscription["cancel_at_period_end"] is False and not subscription.cancel_at_period_end


def test_stripe_refusing_a_change_changes_nothing_here(client, card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    fake_stripe.subscriptions.pop(subscription.provider_ref)  # gone at Stripe
    login(client, user)
    response = client.post("/account/subscription/cancel", headers=HTMX)
    assert response.status_code == 422 and "Stripe refused the request: No such subscription" in \
        response.get_data(as_text=True)
    db_session.expire_all()
    assert not services.live_subscription(user).cancel_at_period_end


def test_manage_payment_methods_opens_a_billing_portal_session(client, card_plans, fake_stripe, db_session):
    user, _subscription = card_subscriber(fake_stripe, card_plans["pro"])
    login(client, user)
    page = client.get("/account/subscription").get_data(as_text=True)
    assert "Manage payment methods" in page
    response = client.post("/account/subscription/payment-methods", headers=HTMX)
    (params,) = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
    customer = db_session.scalars(select(BillingCustomer).where(BillingCustomer.user_id == user.id)).one()
    assert params == {"customer": customer.customer_ref, "return_url": "http://console.test/account/subscription"}
    assert response.headers["HX-Redirect"].startswith(fake_stripe.url("/portal/"))
    result = services.portal_url(user)
    assert result == services.ChangeResult("Continue to Stripe to manage your payment methods.",
                                           redirect_url=result.redirect_url)
    assert result.redirect_url.startswith(fake_stripe.url("/portal/"))


def test_a_roll_over_leaves_stripe_subscriptions_to_stripe(card_plans, fake_stripe, db_session):
    _user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    subscription.current_period_end = utcnow() - timedelta(days=1)
    summary = services.roll_periods(gateway=ManualInvoiceGateway())
    assert summary.renewed == 0 and db_session.scalar(select(func.count(Payment.id)).where(
        Payment.subscription_id == subscription.id)) == 0


# --- overage: the metering work's renewal payment, collected through Stripe -------------------------


def overage_payment(subscription, key: str) -> Payment:
    payment = Payment(user_id=subscription.user_id, subscription=subscription, amount_cents=2900 + 26 + 300,
                      currency="USD", description="Pro plan, period with overage", idempotency_key=key, lines=[
                          {"description": "Pro plan", "amount_cents": 2900},
                          {"description": "Tokens past the limit", "amount_cents": 26, "quota": "tokens",
                           "quantity": 12_345},
                          {"description": "Requests past the limit", "amount_cents": 300, "quota": "requests",
                           "quantity": 150},
                      ])
    services.db.session.add(payment)
    return payment


def test_collect_adds_each_overage_line_as_an_invoice_item_once(card_plans, fake_stripe, db_session):
    _user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    payment = overage_payment(subscription, "renewal-overage-1")
    gateway = default_gateway()
    gateway.collect(payment)
    gateway.collect(payment)  # a retried roll-over
    items = list(fake_stripe.invoice_items.values())
    assert [(item["amount"], item["description"], item["subscription"]) for item in items] == [
        (26, "Tokens past the limit", subscription.provider_ref),
        (300, "Requests past the limit", subscription.provider_ref)], "the plan line is Stripe's own renewal"
    assert [item["metadata"]["quantity"] for item in items] == ["12345", "150"]
    keys = [headers["Idempotency-Key"] for method, path, _, headers in fake_stripe.requests if path == "/v1/invoiceitems"]
    assert keys == ["renewal-overage-1-line-1", "renewal-overage-1-line-2"] * 2
    assert payment.provider == STRIPE and payment.status == "pending"


def test_the_renewal_invoice_paid_settles_the_overage_payment(client, card_plans, fake_stripe, db_session):
    _user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    payment = overage_payment(subscription, "renewal-overage-2")
    default_gateway().collect(payment)
    invoice = fake_stripe.renew(subscription.provider_ref, paid=True)
    assert deliver(client, event("invoice.paid", invoice)).status_code == 200
    db_session.refresh(payment)
    assert (payment.status, payment.provider_ref, payment.amount_cents) == ("succeeded", invoice["id"], 2900 + 326)
    assert payment.hosted_invoice_url == invoice["hosted_invoice_url"] and payment.lines[1]["quota"] == "tokens"


def test_collect_for_a_subscription_invoiced_by_hand_stays_an_invoice(card_plans, fake_stripe, db_session):
    subscription = make_subscription(make_user(), card_plans["pro"])
    payment = overage_payment(subscription, "renewal-manual-1")
    default_gateway().collect(payment)
    assert payment.provider == "manual_invoice" and payment.provider_ref.startswith("INV-")
    assert not fake_stripe.invoice_items


# --- refunds ----------------------------------------------------------------------------------


def paid_by_card(client, fake_stripe, plan) -> Payment:
    _user, subscription = card_subscriber(fake_stripe, plan)
    invoice = fake_stripe.renew(subscription.provider_ref, paid=True)
    deliver(client, event("invoice.paid", invoice))
    return services.db.session.scalars(select(Payment).where(Payment.provider_ref == invoice["id"])).one()


def test_a_partial_then_the_rest_refunded_through_stripe(client, card_plans, fake_stripe, db_session):
    payment = paid_by_card(client, fake_stripe, card_plans["pro"])
    staff = make_user(role="support")
    login(client, staff)
    page = client.get(f"/billing/payments/{payment.id}/refund").get_data(as_text=True)
    assert 'value="29.00"' in page and "back to the card" in page
    response = client.post(f"/billing/payments/{payment.id}/refund", data={"amount": "10.5"})
    assert response.status_code == 303
    refunds = list(fake_stripe.refunds.values())
    assert [(r["amount"], r["payment_intent"]) for r in refunds] == [(1050, payment.provider_charge_ref)]
    db_session.refresh(payment)
    assert (payment.status, payment.refunded_cents) == ("succeeded", 1050)
    too_much = client.post(f"/billing/payments/{payment.id}/refund", data={"amount": "18.51"})
    assert too_much.status_code == 422 and "between $0.01 and $18.50" in too_much.get_data(as_text=True)
    client.post(f"/billing/payments/{payment.id}/refund", data={"amount": "18.50"})
    db_session.refresh(payment)
    assert (payment.status, payment.refunded_cents) == ("refunded", 2900)
    event_rows = services.db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "payment.refund", AuditEvent.object_id == payment.id)).all()
    assert [(row.actor_id, row.changes["amount_cents"]) for row in event_rows] == [(staff.id, 1050), (staff.id, 1850)]


@pytest.mark.parametrize("amount", ["", "abc", "-1", "0", "1e3", "12.345", "99999999999"])
def test_a_refund_amount_that_is_not_one_is_refused(client, card_plans, db_session, amount):
    payment = make_payment(make_user(), amount_cents=2900, provider_ref="INV-REFUND")
    login(client, make_user(role="admin"))
    response = client.post(f"/billing/payments/{payment.id}/refund", data={"amount": amount})
    assert response.status_code == 422
    db_session.refresh(payment)
    assert payment.refunded_cents == 0


def test_an_invoiced_payment_is_refunded_with_a_credit_note(db_session):
    payment = make_payment(make_user(), amount_cents=2900, provider_ref="INV-1")
    message = services.refund_payment(payment, 2900, actor=None)
    assert payment.status == "refunded" and "CN-" in message
    with pytest.raises(RefundError, match="this one is refunded"):
        services.refund_payment(payment, 1, actor=None)


def test_a_refund_from_one_cent_to_what_is_left_is_audited_and_the_last_one_marks_the_payment_refunded(db_session):
    staff = make_user(role="support")
    payment = make_payment(make_user(), amount_cents=2900, currency="EUR", provider_ref="INV-9")
    for amount in (0, 2901):
        with pytest.raises(RefundError) as refusal:
            services.refund_payment(payment, amount, actor=staff)
        assert str(refusal.value) == "The refund must be between €0.01 and €29.00."
    first = services.refund_payment(payment, 1, actor=staff)
    assert (payment.status, payment.refunded_cents) == ("succeeded", 1)
    rest = services.refund_payment(payment, 2899, actor=staff)
    assert (payment.status, payment.refunded_cents) == ("refunded", 2900)
    refunds = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "payment.refund",
                                                          AuditEvent.object_id == payment.id).order_by(AuditEvent.id))
    (one, other) = [(event.actor_id, event.changes) for event in refunds]
    assert one == (staff.id, {"refunded_cents": [0, 1], "amount_cents": 1, "refund": one[1]["refund"]})
    assert other == (staff.id, {"refunded_cents": [1, 2900], "amount_cents": 2899, "refund": other[1]["refund"],
                                "status": ["succeeded", "refunded"]})
    assert (first, rest) == (f"Refunded €0.01 of €29.00 ({one[1]['refund']}).",
                             f"Refunded €28.99 of €29.00 ({other[1]['refund']}).")
    assert one[1]["refund"].startswith("CN-") and other[1]["refund"].startswith("CN-")
    pending = make_payment(make_user(), status="pending")
    with pytest.raises(RefundError) as refusal:
        services.refund_payment(pending, 1, actor=staff)
    assert str(refusal.value) == "Only a succeeded payment can be refunded; this one is pending."


def test_users_cannot_refund(client, db_session):
    payment = make_payment(make_user(), amount_cents=2900)
    login(client, make_user())
    assert client.post(f"/billing/payments/{payment.id}/refund", data={"amount": "1"}).status_code == 403


# --- what people see --------------------------------------------------------------------------


def test_history_links_stripe_invoices_and_our_own_printable_ones(client, card_plans, fake_stripe, db_session):
    payment = paid_by_card(client, fake_stripe, card_plans["pro"])
    invoiced = make_payment(payment.user, amount_cents=1200, status="pending", provider_ref="INV-OWN",
                            description="Seats")
    login(client, payment.user)
    html = client.get("/account/subscription/payments").get_data(as_text=True)
    assert f'href="{payment.hosted_invoice_url}"' in html and f'href="{payment.invoice_pdf_url}"' in html
    own = f"/account/subscription/payments/{invoiced.id}/invoice"
    assert f'href="{own}"' in html
    invoice = client.get(own).get_data(as_text=True)
    assert "Invoice INV-OWN" in invoice and "$12.00" in invoice and "By bank transfer, quoting INV-OWN" in invoice
    assert "data-print" in invoice
    assert client.get(f"/account/subscription/payments/{make_payment(make_user()).id}/invoice").status_code == 404


def test_the_staff_page_links_the_stripe_customer_and_subscription(client, card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    customer = db_session.scalars(select(BillingCustomer).where(BillingCustomer.user_id == user.id)).one()
    login(client, make_user(role="admin"))
    html = client.get(f"/billing/users/{user.id}/subscription").get_data(as_text=True)
    assert f'href="https://dashboard.stripe.com/test/customers/{customer.customer_ref}"' in html
    assert f'href="https://dashboard.stripe.com/test/subscriptions/{subscription.provider_ref}"' in html
    subscription.status = "canceled"  # once it has ended, the page still leads to it
    db_session.flush()
    html = client.get(f"/billing/users/{user.id}/subscription").get_data(as_text=True)
    assert f'last subscription <a href="https://dashboard.stripe.com/test/subscriptions/{subscription.provider_ref}"' \
        in html


def test_staff_cannot_start_a_card_subscription_for_someone(client, card_plans, fake_stripe, db_session):
    user = make_user()
    login(client, make_user(role="admin"))
    response = client.post(f"/billing/users/{user.id}/subscription/change", headers=HTMX,
                           data={"plan": "pro", "expected_amount_cents": "2900"})
    assert response.status_code == 422 and "started by its holder" in response.get_data(as_text=True)
    with pytest.raises(PlanChangeError) as refusal:
        services.change_plan(user, card_plans["pro"], actor=make_user(role="support"))
    assert str(refusal.value) == ("A card subscription is started by its holder, who pays at Stripe's checkout; "
                                  "ask them to choose the plan themselves.")
    assert not fake_stripe.sessions and db_session.scalar(select(func.count(CheckoutSession.id))) == 0


def test_a_checkout_comes_back_to_the_subscription_page_when_abandoned_and_is_audited_as_its_holders(
        card_plans, fake_stripe, db_session):
    user = make_user()
    result = services.change_plan(user, card_plans["pro"], actor=user)
    (session,) = fake_stripe.sessions.values()
    assert result == services.ChangeResult("Continue to Stripe to pay for the Pro plan.", redirect_url=session["url"])
    assert session["cancel_url"] == "http://console.test/account/subscription"
    checkout = db_session.scalars(select(CheckoutSession)).one()
    (started,) = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "subscription.checkout_started"))
    assert (started.object_type, started.object_id, started.actor_id, started.changes) == (
        "checkout_sessions", checkout.id, user.id, {"plan": "pro", "checkout": session["id"]})


def test_under_stripe_a_paid_plan_is_quoted_as_a_checkout_and_a_card_upgrade_at_the_moment_previewed(
        app, card_plans, fake_stripe, db_session, monkeypatch):
    now = utcnow()
    newcomer, invoiced = make_user(), make_user()
    assert services.quote_plan_change(newcomer, card_plans["pro"], now) == services.Quote(
        "checkout", card_plans["pro"], 2900, now)
    assert services.quote_plan_change(newcomer, card_plans["free"], now).kind == "start"
    penny = make_plan("penny", 1, stripe_price_id=fake_stripe.add_price(1))
    assert services.quote_plan_change(newcomer, penny, now).kind == "checkout", "any price is paid by card"
    by_hand = make_subscription(invoiced, card_plans["free"])
    assert services.quote_plan_change(invoiced, card_plans["pro"], now) == services.Quote(
        "checkout", card_plans["pro"], 2900, now, subscription=by_hand)
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    now = utcnow()  # inside the Stripe period, which starts when the checkout completes
    quote = services.quote_plan_change(user, card_plans["team"], now)
    assert (quote.kind, quote.plan, quote.effective_at, quote.proration_date, quote.subscription) == (
        "upgrade", card_plans["team"], now, int(now.timestamp()), subscription)
    preview = fake_stripe.calls("POST", "/v1/invoices/create_preview")[-1]
    assert preview["subscription_details"]["proration_date"] == str(int(now.timestamp()))
    with pytest.raises(PlanChangeError) as refusal:
        services.quote_plan_change(user, card_plans["free"])
    assert str(refusal.value) == (
        f"To move to the Free plan, cancel the subscription: when it ends on "
        f"{services.day_text(subscription.current_period_end)} you are on Free, and no card is charged again.")
    card_plans["team"].stripe_price_id = None
    with pytest.raises(PlanChangeError) as refusal:
        services.quote_plan_change(newcomer, card_plans["team"])
    assert str(refusal.value) == "The Team plan cannot be paid by card yet; contact support to join it."
    monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", None)
    with pytest.raises(PlanChangeError) as refusal:
        services.quote_plan_change(user, card_plans["free"])
    assert str(refusal.value) == services.STRIPE_NOT_CONFIGURED


def test_a_plan_without_a_stripe_price_is_not_sold_by_card(client, card_plans, fake_stripe, db_session):
    card_plans["team"].stripe_price_id = None
    with pytest.raises(PlanChangeError, match="cannot be paid by card yet"):
        services.quote_plan_change(make_user(), card_plans["team"])
    assert services.quote_plan_change(make_user(), card_plans["free"]).kind == "start"
    assert db_session.scalar(select(func.count(UserSubscription.id))) == 0


def test_a_quote_follows_the_gateway_it_is_given_over_the_configured_one(card_plans, fake_stripe, db_session):
    user, now = make_user(), utcnow()
    by_card = services.quote_plan_change(user, card_plans["pro"], now)
    by_invoice = services.quote_plan_change(user, card_plans["pro"], now, gateway=ManualInvoiceGateway())
    assert [(quote.kind, quote.amount_cents) for quote in (by_card, by_invoice)] == [("checkout", 2900), ("start", 2900)]
