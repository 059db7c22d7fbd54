"""Ada's meters say when each quota runs out and what happens past it, and a downgrade below her use warns first."""
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in
from tests.browser.test_every_page import NARROW, RUN_AXE, WIDER_THAN_VIEWPORT, axe_source  # noqa: F401

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


def test_the_meters_forecast_and_explain_the_over_quota_state(live_server, page, backend, axe_source):  # noqa: F811
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    meters = page.locator(".meters")
    # The demo's ada used millions of tokens on Pro's 1,000,000, which bills them past the limit: the price
    # and the amount so far, with the plan that covers her use.
    tokens = meters.locator("li", has=page.locator("#meter-tokens"))
    expect(tokens).to_contain_text("over quota")
    expect(tokens).to_contain_text("Past the limit, tokens are billed as overage at $0.02 per 1,000:")
    expect(tokens).to_contain_text("so far, on the invoice that renews your plan.")
    expect(tokens.get_by_role("link", name="Move to Team, which covers your use")).to_be_visible()
    # The metered quotas she has not reached carry a forecast.
    for key in ("requests", "training_minutes"):
        note = meters.locator(f"#meter-{key}-note")
        expect(note).to_contain_text("At this rate you reach your")
    page.screenshot(path=f"{SHOTS}/usage-meters-desktop-{backend}.png", full_page=True)
    page.evaluate(axe_source)
    serious = [v for v in page.evaluate(RUN_AXE) if v["impact"] in ("critical", "serious")]
    assert not serious, serious

    page.set_viewport_size(NARROW)
    page.reload()
    expect(tokens).to_contain_text("billed as overage")
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW["width"], page.evaluate(WIDER_THAN_VIEWPORT)
    page.locator("section", has=page.locator("#usage-heading")).screenshot(path=f"{SHOTS}/usage-meters-375-{backend}.png")

    page.set_viewport_size({"width": 1280, "height": 900})
    tokens.get_by_role("link", name="Move to Team, which covers your use").click()
    expect(page.get_by_role("heading", name="Upgrade to Team")).to_be_visible()


def test_a_downgrade_below_her_use_warns_before_it_is_confirmed(live_server, page, backend):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    page.get_by_role("link", name="Downgrade to Free").click()
    warning = page.locator("#plan-change-dialog .downgrade-warning")
    expect(warning).to_contain_text("You already use more than Free allows.")
    expect(warning).to_contain_text("tokens this period; Free allows 100,000 per period")
    page.locator("#plan-change-dialog").screenshot(path=f"{SHOTS}/usage-downgrade-warning-{backend}.png")
    page.locator("#plan-change-dialog").get_by_role("button", name="Keep my current plan").click()
    expect(page.locator("#current-plan-heading + dl.facts")).not_to_contain_text("Moves to")


def test_the_alert_banner_shows_until_dismissed_and_the_account_page_switches_alerts_off(live_server, page, backend):
    # The demo data holds the crossings of this period's use, as the alerts beat task records them.
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/")
    banner = page.locator("#usage-alerts-banner")
    expect(banner).to_contain_text("You have used all of your tokens quota for this period")
    expect(banner).to_contain_text("You have used 80% of your training minutes quota for this period")
    banner.screenshot(path=f"{SHOTS}/usage-alert-banner-{backend}.png")
    banner.get_by_role("button", name="Dismiss").click()
    expect(banner).to_have_count(0)
    page.reload()
    expect(page.locator("#usage-alerts-banner")).to_have_count(0)

    page.goto(f"{live_server.url}/account")
    settings = page.locator("#usage-alerts")
    settings.get_by_label("Tokens").uncheck()
    settings.get_by_role("button", name="Save usage alerts").click()
    expect(page.get_by_text("Your usage alerts are saved.")).to_be_visible()
    expect(page.locator("#usage-alerts").get_by_label("Tokens")).not_to_be_checked()
    expect(page.locator("#usage-alerts").get_by_label("Requests")).to_be_checked()
    page.locator("#usage-alerts").screenshot(path=f"{SHOTS}/usage-alert-settings-{backend}.png")


def test_staff_edit_a_plans_metered_quotas_in_form_fields(live_server, page, backend):
    from sqlalchemy import select

    from webapp.billing.models import Plan
    from webapp.extensions import db

    with live_server.app.app_context():
        team_id = db.session.scalar(select(Plan.id).where(Plan.code == "team"))
    sign_in(page, live_server.url, "admin@demo.test")
    page.goto(f"{live_server.url}/admin/plans/edit/?id={team_id}")
    page.get_by_label("Tokens: at the limit").select_option("overage")
    page.get_by_label("Tokens: overage billed per").fill("1000")
    page.get_by_label("Tokens: overage price in cents").fill("2")
    page.screenshot(path=f"{SHOTS}/usage-admin-plan-form-{backend}.png", full_page=True)
    page.locator("input[type=submit][value=Save]").click()
    expect(page.get_by_text("Record was successfully saved.")).to_be_visible()
    with live_server.app.app_context():
        quotas = db.session.scalar(select(Plan.quotas).where(Plan.id == team_id))
    assert quotas["overage"] == {"tokens": {"per": 1000, "cents": 2}} and quotas["tokens"] == 10_000_000
