"""Ada pays by card: Stripe Checkout (a local fake), the return page's "processing" until the signed webhook
arrives, then her new plan; a failed renewal puts the dunning banner on every page until a payment succeeds."""
from __future__ import annotations

import urllib.request

import pytest
import stripe
from playwright.sync_api import expect
from sqlalchemy import select

from tests.billing.fake_stripe import SECRET_KEY, FakeStripe
from tests.billing.stripe_events import body, event, signature
from tests.browser.helpers import sign_in
from tests.conftest import LiveServer, app_of_its_own
from webapp.billing.models import Plan
from webapp.extensions import db

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


@pytest.fixture(scope="module")
def stripe_console(backend, tmp_path_factory):
    """The demo console with Stripe configured, its API a fake on this machine, serving on a real port."""
    from webapp.seed.demo import seed_demo

    with FakeStripe() as fake, pytest.MonkeyPatch.context() as patch, app_of_its_own(
            backend, tmp_path_factory.mktemp(f"stripe-live-{backend}"), "_stripe_live", WTF_CSRF_ENABLED=True,
            SERVER_NAME=None, MAIL_BACKEND="outbox", STRIPE_SECRET_KEY=SECRET_KEY) as app:
        patch.setattr(stripe, "api_base", fake.url(""))
        with app.app_context():
            seed_demo(app.config["DEMO_PASSWORD"])
            for plan in db.session.scalars(select(Plan).where(Plan.price_cents > 0)):
                plan.stripe_price_id = fake.add_price(plan.price_cents)
            db.session.commit()
        with LiveServer(app) as server:
            app.config["BASE_URL"] = server.url
            yield server, fake


def send_webhook(server, document: dict) -> int:
    """Deliver ``document`` as Stripe does: a JSON POST signed with the endpoint's secret."""
    payload = body(document)
    request = urllib.request.Request(f"{server.url}/webhooks/stripe", data=payload, method="POST", headers={
        "Content-Type": "application/json", "Stripe-Signature": signature(payload)})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_ada_upgrades_through_checkout_and_a_failed_renewal_shows_the_dunning_banner(stripe_console, page, backend):
    server, fake = stripe_console
    sign_in(page, server.url, "ada@demo.test")
    page.goto(f"{server.url}/account/subscription")
    page.get_by_role("link", name="Upgrade to Team").click()
    confirmation = page.locator("#plan-change-dialog")
    expect(confirmation).to_contain_text("Stripe's secure checkout")
    page.screenshot(path=f"{SHOTS}/stripe-confirm-{backend}.png", full_page=True)
    confirmation.get_by_role("button", name="Continue to payment").click()

    expect(page.get_by_role("heading", name="Pay with card")).to_be_visible()
    assert page.url.startswith(fake.url("/checkout/"))
    page.get_by_role("button", name="Pay").click()
    status = page.locator("#checkout-status")
    expect(status).to_contain_text("Processing your payment for the Team plan")
    assert page.url.startswith(f"{server.url}/account/subscription/checkout/return?session_id=cs_test_")
    page.screenshot(path=f"{SHOTS}/stripe-processing-{backend}.png", full_page=True)

    (session,) = [s for s in fake.sessions.values() if s["status"] == "complete"]
    assert send_webhook(server, event("checkout.session.completed", session)) == 200
    expect(status).to_contain_text("You are now on the Team plan", timeout=15_000)
    page.screenshot(path=f"{SHOTS}/stripe-confirmed-{backend}.png", full_page=True)
    page.get_by_role("link", name="Go to your subscription").click()
    expect(page.locator("#current-plan-heading + dl.facts")).to_contain_text("Team")
    expect(page.get_by_role("button", name="Manage payment methods")).to_be_visible()

    failed = fake.renew(session["subscription"], paid=False)
    assert send_webhook(server, event("invoice.payment_failed", failed)) == 200
    for path in ("/", "/minions", "/account/subscription"):
        page.goto(f"{server.url}{path}")
        banner = page.locator(".dunning-banner")
        expect(banner).to_contain_text("Your last payment for the Team plan failed")
        expect(banner.get_by_role("button", name="Update your payment method")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/stripe-dunning-{backend}.png", full_page=True)
    page.locator(".dunning-banner").get_by_role("button", name="Update your payment method").click()
    expect(page.get_by_role("heading", name="Manage your billing")).to_be_visible()

    assert send_webhook(server, event("invoice.paid", fake.settle(failed, paid=True))) == 200
    page.goto(f"{server.url}/account/subscription")
    expect(page.locator(".dunning-banner")).to_have_count(0)
    expect(page.locator("#payment-history")).to_contain_text("Invoice")
    page.screenshot(path=f"{SHOTS}/stripe-recovered-{backend}.png", full_page=True)
