"""POST /webhooks/stripe: signed with Stripe's real scheme, stored once by event id with its effect,
never rolled back by an older event, audited with the event id; dunning follows failed renewals."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.billing.fake_stripe import SECRET_KEY, FakeStripe, new_id
from tests.billing.stripe_events import body, deliver, event, signature
from tests.billing.test_stripe import card_subscriber
from tests.concurrency import all_at_once
from tests.conftest import app_of_its_own, login
from tests.factories import make_plan, make_subscription, make_usage, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing import services
from webapp.billing.models import STRIPE, Payment, UserSubscription, WebhookEvent
from webapp.db import utcnow
from webapp.extensions import db
from webapp.mail import outbox


def stored_events() -> int:
    return db.session.scalar(select(func.count(WebhookEvent.id)))


def invoice_failed(fake_stripe, subscription):
    return fake_stripe.renew(subscription.provider_ref, paid=False)


def test_a_valid_event_is_stored_with_its_effect_and_audited_with_its_id(client, card_plans, fake_stripe,
                                                                         db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    stripe_subscription = fake_stripe.subscriptions[subscription.provider_ref]
    stripe_subscription["cancel_at_period_end"] = True
    document = event("customer.subscription.updated", stripe_subscription)
    response = deliver(client, document)
    assert response.status_code == 200 and response.get_json() == {"received": True, "outcome": "applied"}
    db_session.refresh(subscription)
    assert subscription.cancel_at_period_end
    stored = db_session.scalars(select(WebhookEvent).where(WebhookEvent.event_ref == document["id"])).one()
    assert stored.event_type == "customer.subscription.updated" and stored.payload == document
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "subscription.synced")).one()
    assert audit.changes == {"cancel_at_period_end": [False, True], "stripe_event": document["id"]}
    assert audit.actor_id is None and audit.object_id == subscription.id


@pytest.mark.parametrize("tamper", ["wrong secret", "changed body", "no header", "garbage header"])
def test_a_bad_signature_gets_a_400_and_stores_nothing(client, db_session, tamper):
    document = event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_1"})
    payload = body(document)
    header = {"wrong secret": signature(payload, "whsec_someone_else"),
              "changed body": signature(body({**document, "type": "invoice.payment_failed"})),
              "no header": None, "garbage header": "t=abc,v1=zzz"}[tamper]
    response = client.post("/webhooks/stripe", data=payload, content_type="application/json",
                           headers={"Stripe-Signature": header} if header else {})
    assert response.status_code == 400 and "Not a verified Stripe event" in response.get_json()["detail"]
    assert stored_events() == 0


def test_a_signature_outside_the_tolerance_window_is_refused(client, app, db_session):
    document = event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_1"})
    tolerance = app.config["STRIPE_WEBHOOK_TOLERANCE_SECONDS"]
    assert deliver(client, document, signed_at=int(time.time()) - tolerance - 5).status_code == 400
    assert stored_events() == 0
    assert deliver(client, document, signed_at=int(time.time()) - tolerance + 30).status_code == 200


def test_the_same_event_twice_does_nothing_the_second_time(client, card_plans, fake_stripe, db_session):
    _user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    outbox(client.application).clear()
    document = event("invoice.payment_failed", invoice_failed(fake_stripe, subscription))
    assert deliver(client, document).get_json()["outcome"] == "applied"
    payments = db_session.scalar(select(func.count(Payment.id)))
    audits = db_session.scalar(select(func.count(AuditEvent.id)))
    again = deliver(client, document)
    assert again.status_code == 200 and again.get_json()["outcome"] == "ignored: already received"
    assert db_session.scalar(select(func.count(Payment.id))) == payments
    assert db_session.scalar(select(func.count(AuditEvent.id))) == audits
    assert len(outbox(client.application)) == 1, "one dunning mail"


def test_an_older_subscription_update_arriving_late_does_not_roll_state_back(client, card_plans, fake_stripe,
                                                                            db_session):
    _user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    stripe_subscription = fake_stripe.subscriptions[subscription.provider_ref]
    now = int(time.time())
    older = event("customer.subscription.updated", {**stripe_subscription, "cancel_at_period_end": False},
                  created=now + 10)
    newer = event("customer.subscription.updated", {**stripe_subscription, "cancel_at_period_end": True},
                  created=now + 20)
    assert deliver(client, newer).get_json()["outcome"] == "applied"
    late = deliver(client, older)
    assert late.status_code == 200 and late.get_json()["outcome"] == "ignored: older than the state already applied"
    db_session.refresh(subscription)
    assert subscription.cancel_at_period_end is True
    assert db_session.scalar(select(WebhookEvent.outcome).where(WebhookEvent.event_ref == older["id"])) == \
        "ignored: older than the state already applied", "the late event is still stored"


@pytest.mark.parametrize("event_type", ["invoice.paid", "invoice.payment_failed"])
def test_an_event_for_an_unknown_customer_is_stored_and_acknowledged(client, fake_stripe, db_session, event_type):
    stranger = fake_stripe.start_subscription(fake_stripe.create_customer({})[1]["id"], fake_stripe.add_price(500))
    invoice = fake_stripe.renew(stranger["id"], paid=event_type == "invoice.paid")
    response = deliver(client, event(event_type, invoice))
    assert response.status_code == 200 and response.get_json()["outcome"] == \
        "ignored: no customer here has this Stripe id"
    assert stored_events() == 1 and db_session.scalar(select(func.count(Payment.id))) == 0


def test_an_unknown_event_type_is_stored_and_acknowledged(client, db_session):
    response = deliver(client, event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"}))
    assert response.status_code == 200 and response.get_json()["outcome"].startswith("ignored: not an event")
    assert stored_events() == 1


def test_a_signed_body_that_is_not_an_event_is_refused(client, db_session):
    payload = body({"id": 12, "type": "invoice.paid"})
    response = client.post("/webhooks/stripe", data=payload, content_type="application/json",
                           headers={"Stripe-Signature": signature(payload)})
    assert response.status_code == 400 and stored_events() == 0


def test_the_endpoint_needs_no_csrf_token_and_has_its_own_size_limit(client, app, csrf_enabled, db_session,
                                                                     monkeypatch):
    assert deliver(client, event("ping.unknown", {"id": "x", "object": "thing"})).status_code == 200
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_MAX_BYTES", 2_000)
    big = event("ping.unknown", {"id": "y", "object": "thing", "note": "x" * 3_000})
    response = deliver(client, big)
    assert response.status_code == 413 and stored_events() == 1


def test_without_a_webhook_secret_the_endpoint_is_not_there(client, app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", None)
    assert deliver(client, event("invoice.paid", {"id": "in_1"})).status_code == 404


# --- Stripe's state applied here (without HTTP) ------------------------------------------------


def stripe_subscriber(plan, **fields):
    """A user with a Stripe subscription to ``plan``, 10 days into a period that starts on a whole second."""
    user = make_user()
    start = utcnow().replace(microsecond=0) - timedelta(days=10)
    return user, make_subscription(user, plan, provider=STRIPE, provider_ref="sub_state", current_period_start=start,
                                   **fields)


def stripe_state(subscription, plan, status="active", start=None, end=None, **fields) -> dict:
    """Stripe's subscription object for ``subscription`` on ``plan``'s price, by default in its current period."""
    def seconds(moment):
        return int(moment.timestamp())

    item = {"price": {"id": plan.stripe_price_id},
            "current_period_start": seconds(start or subscription.current_period_start),
            "current_period_end": seconds(end or subscription.current_period_end)}
    return {"id": subscription.provider_ref, "object": "subscription", "status": status, "items": {"data": [item]},
            **fields}


@pytest.fixture
def priced_plans(db_session):
    metered = {"tokens": 1_000, "overage": {"tokens": {"per": 1_000, "cents": 2}}}
    return {"pro": make_plan("pro", 2900, quotas=metered, stripe_price_id="price_pro"),
            "team": make_plan("team", 9900, stripe_price_id="price_team")}


def test_a_stripe_renewal_moves_the_period_bills_the_closed_periods_overage_and_dunning_follows_past_due(
        app, priced_plans, db_session):
    user, subscription = stripe_subscriber(priced_plans["pro"])
    old_start, old_end = subscription.current_period_start, subscription.current_period_end
    make_usage(user, "input_tokens", 3_500, subscription=subscription)  # 2,500 past the limit: 3 steps of 2 cents
    outbox(app).clear()
    synced_at = old_end + timedelta(hours=1)
    state = stripe_state(subscription, priced_plans["pro"], "past_due", start=old_end, end=old_end + timedelta(days=30),
                         cancel_at_period_end=True, canceled_at=int(synced_at.timestamp()), schedule="sub_sched_1")

    changes = services.sync_stripe_subscription(subscription, state, synced_at)

    assert changes == {"status": ["active", "past_due"], "current_period_start": [old_start, old_end],
                       "current_period_end": [old_end, old_end + timedelta(days=30)],
                       "cancel_at_period_end": [False, True], "canceled_at": [None, synced_at]}
    assert (subscription.status, subscription.current_period_start, subscription.current_period_end) == (
        "past_due", old_end, old_end + timedelta(days=30))
    assert subscription.cancel_at_period_end is True and subscription.canceled_at == synced_at
    assert subscription.provider_synced_at == synced_at
    assert subscription.provider_schedule_ref is None, "no move is scheduled here, whatever Stripe holds"
    assert user.current_subscription_id == subscription.id, "a past-due subscription is still the user's"
    (mail,) = outbox(app)
    assert mail["Subject"] == "Your card payment failed"
    (overage,) = db_session.scalars(select(Payment).where(Payment.subscription_id == subscription.id))
    assert (overage.amount_cents, overage.idempotency_key, overage.description) == (
        6, f"overage-{subscription.id}-{old_end:%Y%m%dT%H%M%S}",
        f"Pro plan, overage of the period to {services.day_text(old_end)}")

    outbox(app).clear()
    assert services.sync_stripe_subscription(subscription, state, synced_at + timedelta(hours=1)) == {}
    assert outbox(app) == [], "still past due: no second mail"
    assert db_session.scalar(select(func.count(Payment.id))) == 1


@pytest.mark.parametrize("reason, status", [("payment_failed", "expired"), ("cancellation_requested", "canceled")])
def test_a_stripe_subscription_that_ended_is_no_longer_the_users_and_one_stripe_gave_up_on_expired(
        priced_plans, db_session, reason, status):
    user, subscription = stripe_subscriber(priced_plans["pro"])
    state = stripe_state(subscription, priced_plans["team"], "canceled", cancellation_details={"reason": reason})

    changes = services.sync_stripe_subscription(subscription, state, utcnow())

    assert changes == {"plan": ["pro", "team"], "status": ["active", status]}
    assert (subscription.plan.code, subscription.status) == ("team", status)
    assert user.current_subscription_id is None


def test_a_stripe_state_already_applied_or_unknown_to_the_console_changes_nothing(app, priced_plans, db_session):
    user, subscription = stripe_subscriber(priced_plans["pro"])
    outbox(app).clear()
    assert services.sync_stripe_subscription(subscription, stripe_state(subscription, priced_plans["pro"]),
                                             utcnow()) == {}
    unknown = stripe_state(subscription, priced_plans["pro"], "some_new_status")
    unknown["items"]["data"][0]["price"]["id"] = "price_sold_elsewhere"
    assert services.sync_stripe_subscription(subscription, unknown, utcnow()) == {}
    assert (subscription.plan.code, subscription.status, user.current_subscription_id) == (
        "pro", "active", subscription.id)
    assert outbox(app) == [] and db_session.scalar(select(func.count(Payment.id))) == 0


def test_a_scheduled_downgrade_stays_while_stripe_holds_its_schedule_and_goes_once_released_or_reached(
        priced_plans, db_session):
    pro, team = priced_plans["pro"], priced_plans["team"]
    _user, subscription = stripe_subscriber(team, pending_plan_id=pro.id)
    db_session.refresh(subscription)
    assert services.sync_stripe_subscription(subscription, stripe_state(subscription, team, schedule="sub_sched_1"),
                                             utcnow()) == {}
    assert (subscription.pending_plan.code, subscription.provider_schedule_ref) == ("pro", "sub_sched_1")

    released = services.sync_stripe_subscription(subscription, stripe_state(subscription, team, schedule=None),
                                                 utcnow())
    assert released == {"pending_plan": ["pro", None]}
    assert subscription.pending_plan is None and subscription.provider_schedule_ref is None

    subscription.pending_plan = pro
    reached = services.sync_stripe_subscription(subscription, stripe_state(subscription, pro, schedule="sub_sched_1"),
                                                utcnow())
    assert reached == {"plan": ["team", "pro"], "pending_plan": ["pro", None]}
    assert subscription.pending_plan is None and subscription.provider_schedule_ref is None


# --- dunning -----------------------------------------------------------------------------------


def test_a_failed_renewal_makes_the_subscription_past_due_with_a_banner_and_a_mail_until_it_is_paid(
        client, card_plans, fake_stripe, db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    login(client, user)
    outbox(client.application).clear()
    failed = invoice_failed(fake_stripe, subscription)
    assert deliver(client, event("invoice.payment_failed", failed)).status_code == 200
    db_session.refresh(subscription)
    assert subscription.status == "past_due"
    payment = db_session.scalars(select(Payment).where(Payment.provider_ref == failed["id"])).one()
    assert payment.status == "failed" and "Stripe tries again on" in payment.failure_reason
    (mail,) = outbox(client.application)
    assert mail["To"] == user.email and "http://console.test/account/subscription" in mail.get_content()
    for page in ("/", "/account", "/minions"):
        html = client.get(page).get_data(as_text=True)
        assert "dunning-banner" in html and "Update your payment method" in html, page
    assert client.post("/account/subscription/payment-methods", headers={"HX-Request": "true"}).status_code == 204
    paid = fake_stripe.settle(failed, paid=True)
    assert deliver(client, event("invoice.paid", paid)).status_code == 200
    db_session.refresh(subscription)
    db_session.refresh(payment)
    assert subscription.status == "active" and payment.status == "succeeded" and payment.failure_reason is None
    assert "dunning-banner" not in client.get("/").get_data(as_text=True)
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == subscription.id,
                                                                 AuditEvent.object_type == "user_subscriptions"))
    assert {"subscription.past_due", "subscription.recovered"} <= set(actions)


@pytest.mark.parametrize("status, marked", [("active", True), ("trialing", True), ("past_due", False),
                                            ("canceled", False)])
def test_only_a_running_subscription_turns_past_due_and_then_its_holder_is_mailed(app, db_session, status, marked):
    user = make_user(display_name="Ada Lovelace")
    subscription = make_subscription(user, make_plan("pro", 2900), status=status)
    outbox(app).clear()
    assert services.mark_past_due(subscription) is marked
    assert subscription.status == ("past_due" if marked else status)
    if not marked:
        assert outbox(app) == []
        return
    (mail,) = outbox(app)
    assert (mail["To"], mail["Subject"]) == (user.email, "Your card payment failed")
    text = mail.get_content()
    assert text.startswith("Hello Ada Lovelace,") and "Your card payment for the Pro plan did not go through" in text
    assert "\nhttp://console.test/account/subscription\n" in text


def test_when_stripe_gives_up_the_subscription_ends_and_the_user_falls_back(client, card_plans, fake_stripe,
                                                                            db_session):
    user, subscription = card_subscriber(fake_stripe, card_plans["pro"])
    stripe_subscription = fake_stripe.subscriptions[subscription.provider_ref]
    stripe_subscription.update(status="canceled", canceled_at=int(time.time()),
                               cancellation_details={"reason": "payment_failed", "comment": None, "feedback": None})
    assert deliver(client, event("customer.subscription.deleted", stripe_subscription)).status_code == 200
    db_session.refresh(subscription)
    db_session.refresh(user)
    assert subscription.status == "expired" and user.current_subscription_id is None
    assert services.live_subscription(user) is None


def test_a_subscription_unknown_here_is_acknowledged(client, db_session):
    response = deliver(client, event("customer.subscription.updated", {"id": "sub_nobody", "object": "subscription"}))
    assert response.get_json()["outcome"] == "ignored: no subscription here has this Stripe id"


# --- concurrent deliveries --------------------------------------------------------------------


@pytest.fixture
def race_app(backend, tmp_path, monkeypatch):
    """An app with its own database, where each delivery commits for real."""
    import stripe

    with app_of_its_own(backend, tmp_path, "_race", STRIPE_SECRET_KEY=SECRET_KEY) as app, FakeStripe() as server:
        monkeypatch.setattr(stripe, "api_base", server.url(""))
        yield app, server


def test_concurrent_deliveries_of_one_event_apply_it_once(race_app):
    app, fake = race_app
    with app.app_context():
        plan = make_plan("pro", 2900, stripe_price_id=fake.add_price(2900))
        _user, subscription = card_subscriber(fake, plan, make_user())
        db.session.commit()
        subscription_id = subscription.id
        failed = fake.renew(subscription.provider_ref, paid=False)
    document = event("invoice.payment_failed", failed, event_id=new_id("evt"))

    def deliver_once(_index: int):
        return deliver(app.test_client(), document)

    responses = all_at_once(8, deliver_once)
    assert [getattr(r, "status_code", r) for r in responses] == [200] * 8
    assert sorted(r.get_json()["outcome"] for r in responses) == ["applied"] + ["ignored: already received"] * 7
    with app.app_context():
        assert db.session.scalar(select(func.count(WebhookEvent.id)).where(
            WebhookEvent.event_ref == document["id"])) == 1
        assert db.session.scalar(select(func.count(Payment.id)).where(Payment.provider_ref == failed["id"])) == 1
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "subscription.past_due")) == 1
        assert db.session.get(UserSubscription, subscription_id).status == "past_due"
    assert len(outbox(app)) == 1


def test_a_period_stripe_closes_bills_its_overage_as_invoice_items_once(client, fake_stripe, db_session):
    plan = make_plan("metered", 2900, quotas={"tokens": 1_000, "overage": {"tokens": {"per": 1_000, "cents": 2}}},
                     stripe_price_id=fake_stripe.add_price(2900))
    user, subscription = card_subscriber(fake_stripe, plan)
    make_usage(user, "input_tokens", 3_500, subscription=subscription)  # 2,500 past the limit: 3 steps of 2 cents
    closed_on = subscription.current_period_end
    fake_stripe.renew(subscription.provider_ref, paid=True)
    renewed = fake_stripe.subscriptions[subscription.provider_ref]
    assert deliver(client, event("customer.subscription.updated", renewed)).get_json()["outcome"] == "applied"
    assert deliver(client, event("customer.subscription.updated", renewed)).status_code == 200  # another event, same period
    items = list(fake_stripe.invoice_items.values())
    assert [(item["amount"], item["subscription"], item["metadata"]["quantity"]) for item in items] == [
        (6, subscription.provider_ref, "2500")]
    payment = db_session.scalars(select(Payment).where(Payment.subscription_id == subscription.id,
                                                       Payment.idempotency_key.like("overage-%"))).one()
    assert (payment.amount_cents, payment.status, payment.provider) == (6, "pending", "stripe")
    assert payment.idempotency_key == f"overage-{subscription.id}-{closed_on:%Y%m%dT%H%M%S}"
