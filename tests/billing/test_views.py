"""The subscription page over HTTP: renderings, HTMX changes, refusals, staff on a user's behalf, query count."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import login
from tests.factories import make_payment, make_plan, make_subscription, make_usage, make_user
from webapp.accounts.models import AuditEvent
from webapp.billing.models import Payment, UserSubscription
from webapp.db import utcnow

HTMX = {"HX-Request": "true"}
# Ada is 10 days into a 30-day Pro period: 20/30 of Team's $70 more is $46.666..., rounded half up
# (and still so for the first minute after the fixture starts the period).
PRORATED_TEAM_UPGRADE, PRORATED_TEAM_UPGRADE_TEXT = 4667, "$46.67"


@pytest.fixture
def plans(db_session):
    return {"free": make_plan("free", 0, sort_order=0), "pro": make_plan("pro", 2900, sort_order=1),
            "team": make_plan("team", 9900, sort_order=2), "secret": make_plan("secret", 1, is_public=False)}


@pytest.fixture
def ada(client, plans):
    user = make_user()
    make_subscription(user, plans["pro"])
    login(client, user)
    return user


def test_page_shows_plan_period_meters_chart_cards_and_payments(client, ada, plans):
    make_usage(ada, "input_tokens", 1234, occurred_at=utcnow() - timedelta(days=1))
    make_payment(ada, amount_cents=2900, provider_ref="INV-SEEN")
    response = client.get("/account/subscription")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert "Your subscription" in html and "Renews on" in html and "$29.00 per month" in html
    assert 'role="progressbar"' in html and "1,234 of 100,000" in html
    assert "<svg" in html and "<title id=\"usage-chart-title\">" in html and "Daily usage as a table" in html
    assert "INV-SEEN" in html and "Upgrade to Team" in html and "Downgrade to Free" in html
    assert "Secret" not in html, "only public plans are offered"


def test_htmx_requests_get_the_panel_only(client, ada):
    html = client.get("/account/subscription", headers=HTMX).get_data(as_text=True)
    assert 'id="subscription-panel"' in html and "<html" not in html


def test_confirmation_shows_the_prorated_amount_before_anything_changes(client, ada, plans, db_session):
    subscription = db_session.scalars(select(UserSubscription).where(UserSubscription.user_id == ada.id)).one()
    fragment = client.get("/account/subscription/change?plan=team", headers=HTMX).get_data(as_text=True)
    assert PRORATED_TEAM_UPGRADE_TEXT in fragment and "<html" not in fragment
    assert f'name="expected_amount_cents" value="{PRORATED_TEAM_UPGRADE}"' in fragment
    page = client.get("/account/subscription/change?plan=team")
    assert "<html" in page.get_data(as_text=True), "opened directly, it is a full page with a plain form"
    db_session.expire_all()
    assert subscription.plan_id == plans["pro"].id


def test_upgrade_over_htmx_swaps_the_updated_panel(client, ada, plans, db_session):
    subscription = db_session.scalars(select(UserSubscription).where(UserSubscription.user_id == ada.id)).one()
    response = client.post("/account/subscription/change", headers=HTMX,
                           data={"plan": "team", "expected_amount_cents": PRORATED_TEAM_UPGRADE, "reference": "PO-1"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="subscription-panel"' in html and "<html" not in html
    assert "You are now on the Team plan" in html
    db_session.expire_all()
    assert subscription.plan_id == plans["team"].id
    payment = db_session.scalars(select(Payment).where(Payment.user_id == ada.id)).one()
    assert payment.status == "pending" and payment.provider_ref in html
    assert payment.amount_cents == PRORATED_TEAM_UPGRADE and PRORATED_TEAM_UPGRADE_TEXT in html


def test_plain_form_post_redirects_with_a_flash(client, ada):
    response = client.post("/account/subscription/cancel")
    assert response.status_code == 303 and response.headers["Location"].endswith("/account/subscription")
    assert "Your subscription ends on" in client.get("/account/subscription").get_data(as_text=True)


@pytest.mark.parametrize("url, data", [
    ("/account/subscription/change", {"plan": "pro"}),
    ("/account/subscription/change", {"plan": "secret"}),
    ("/account/subscription/change", {"plan": "nope"}),
    ("/account/subscription/resume", {}),
    ("/account/subscription/downgrade/call-off", {}),
])
def test_invalid_changes_get_a_422_notice_and_change_nothing(client, ada, db_session, url, data):
    events = db_session.scalar(select(func.count(AuditEvent.id)))
    before = db_session.execute(select(UserSubscription.plan_id, UserSubscription.lock_version)
                                .where(UserSubscription.user_id == ada.id)).one()
    response = client.post(url, data=data, headers=HTMX)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#billing-notice" and 'role="alert"' in response.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.execute(select(UserSubscription.plan_id, UserSubscription.lock_version)
                              .where(UserSubscription.user_id == ada.id)).one() == before
    assert db_session.scalar(select(func.count(AuditEvent.id))) == events
    assert client.post(url, data=data).status_code == 422, "without HTMX: the full page with the notice"


def test_a_user_without_a_subscription_sees_the_ended_one_and_can_start(client, plans, db_session):
    user = make_user()
    make_subscription(user, plans["pro"], status="expired", days_into_period=45)
    login(client, user)
    html = client.get("/account/subscription").get_data(as_text=True)
    assert "There is no running subscription" in html and "(expired)" in html and "Choose Free" in html
    response = client.post("/account/subscription/change", data={"plan": "free", "expected_amount_cents": 0},
                           headers=HTMX)
    assert response.status_code == 200 and "Your Free subscription has started" in response.get_data(as_text=True)


def test_staff_with_billing_manage_change_a_users_plan_on_their_behalf(client, plans, db_session):
    customer = make_user()
    subscription = make_subscription(customer, plans["team"])
    admin = make_user(role="admin")
    login(client, admin)
    page = client.get(f"/billing/users/{customer.id}/subscription").get_data(as_text=True)
    assert f"Subscription of {customer.display_name}" in page and "You are acting for" in page
    assert f"/billing/users/{customer.id}/subscription/cancel" in page
    response = client.post(f"/billing/users/{customer.id}/subscription/change",
                           data={"plan": "pro", "expected_amount_cents": "0"}, headers=HTMX)
    assert response.status_code == 200
    db_session.expire_all()
    assert subscription.pending_plan_id == plans["pro"].id
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.object_id == subscription.id,
                                                        AuditEvent.object_type == "user_subscriptions")).one()
    assert event.actor_id == admin.id and event.action == "subscription.downgrade_scheduled"
    assert client.get("/billing/users/999999/subscription").status_code == 404


def test_support_cannot_open_another_users_subscription(client, plans):
    customer = make_user()
    login(client, make_user(role="support"))
    assert client.get(f"/billing/users/{customer.id}/subscription").status_code == 403


def test_payment_history_is_paginated_and_renders_as_a_page_or_a_block(app, client, ada):
    for n in range(app.config["PAGE_SIZE"] + 3):
        make_payment(ada, amount_cents=100 + n)
    page_one = client.get("/account/subscription").get_data(as_text=True)
    assert 'rel="next"' in page_one and 'hx-target="#payment-history"' in page_one
    second = client.get("/account/subscription/payments?page=2", headers=HTMX).get_data(as_text=True)
    assert second.count("<tr>") == 1 + 3 and 'rel="prev"' in second and "<html" not in second
    assert "<html" in client.get("/account/subscription/payments?page=2").get_data(as_text=True)


def test_the_page_shows_its_payments_as_the_payment_history_does(client, plans):
    """The page reads its payments with its other figures, as JSON: each shows as the history page's record does."""
    customer = make_user()
    make_subscription(customer, plans["pro"])
    make_payment(customer, amount_cents=2904, provider_ref="INV-LINES", lines=[
        {"description": "Pro plan", "amount_cents": 2900},
        {"description": "Tokens past the limit", "amount_cents": 4, "quota": "tokens", "quantity": 2000}])
    make_payment(customer, amount_cents=2900, refunded_cents=900, provider_ref="INV-PART-REFUNDED")
    make_payment(customer, amount_cents=2900, status="failed", failure_reason="Card declined", provider="stripe",
                 provider_ref="in_failed", hosted_invoice_url="https://invoice.stripe.com/i/failed",
                 invoice_pdf_url="https://pay.stripe.com/invoice/failed/pdf")
    login(client, make_user(role="admin"))
    page = client.get(f"/billing/users/{customer.id}/subscription", headers=HTMX).get_data(as_text=True)
    history = client.get(f"/billing/users/{customer.id}/subscription/payments",
                         headers=HTMX).get_data(as_text=True).strip()
    assert "Tokens past the limit: $0.04" in history and "$9.00 refunded" in history and "Card declined" in history
    assert "Refund INV-PART-REFUNDED" in history and "PDF of invoice in_failed" in history
    assert history in page


def test_query_count_does_not_grow_with_usage_records_or_payments(client, ada, count_queries):
    def page_queries() -> int:
        with count_queries() as counter:
            assert client.get("/account/subscription").status_code == 200
        return counter.count

    few = page_queries()
    for day in range(25):
        for metric in ("input_tokens", "output_tokens", "requests", "training_minutes"):
            make_usage(ada, metric, 10 + day, occurred_at=utcnow() - timedelta(days=day % 9, hours=1))
        make_payment(ada, amount_cents=100 + day)
    assert page_queries() == few


def test_roll_periods_cli_commits_the_roll_over(app, plans, db_session):
    user = make_user()
    subscription = make_subscription(user, plans["pro"], current_period_start=utcnow() - timedelta(days=31),
                                     cancel_at_period_end=True)
    result = app.test_cli_runner().invoke(args=["billing", "roll-periods"])
    assert result.exit_code == 0 and "ended 1" in result.output
    db_session.expire_all()
    assert subscription.status == "canceled"
