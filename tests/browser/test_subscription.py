"""Ada upgrades, schedules and calls off a downgrade, cancels and resumes; the panel updates in place."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


def current_plan(page):
    return page.locator("#current-plan-heading + dl.facts")


def test_change_plan_cancel_and_resume_without_a_full_page_load(live_server, page, backend):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    expect(page.get_by_role("heading", name="Your subscription", level=1)).to_be_visible()
    expect(current_plan(page)).to_contain_text("Pro")
    page.on("dialog", lambda dialog: dialog.accept())
    # Set on the window: it survives HTMX swaps and disappears on a full page load.
    page.evaluate("window.noFullReload = true")
    page.screenshot(path=f"{SHOTS}/subscription-pro-{backend}.png", full_page=True)

    page.get_by_role("link", name="Upgrade to Team").click()
    confirmation = page.locator("#plan-change-dialog")
    expect(confirmation.get_by_role("heading", name="Upgrade to Team")).to_be_visible()
    amount = confirmation.locator(".prorated-amount").inner_text()
    assert re.fullmatch(r"\$\d+\.\d\d", amount)
    page.screenshot(path=f"{SHOTS}/subscription-upgrade-confirm-{backend}.png", full_page=True)
    confirmation.get_by_role("button", name=f"Confirm and pay {amount}").click()
    expect(page.locator("#billing-notice")).to_contain_text("You are now on the Team plan")
    expect(current_plan(page)).to_contain_text("Team")
    expect(page.locator("#payment-history tbody tr").first).to_contain_text(amount)
    expect(page.locator("#payment-history tbody tr").first).to_contain_text("pending")

    page.get_by_role("link", name="Downgrade to Pro").click()
    confirmation.get_by_role("button", name="Schedule the move").click()
    expect(current_plan(page)).to_contain_text("Moves to Pro on")
    page.screenshot(path=f"{SHOTS}/subscription-downgrade-pending-{backend}.png", full_page=True)
    page.get_by_role("button", name="Stay on Team").click()
    expect(page.locator("#billing-notice")).to_contain_text("You stay on the Team plan")
    expect(current_plan(page)).not_to_contain_text("Moves to")

    page.get_by_role("button", name="Cancel subscription").click()
    expect(current_plan(page)).to_contain_text("Ends on")
    page.screenshot(path=f"{SHOTS}/subscription-cancelled-{backend}.png", full_page=True)
    page.get_by_role("button", name="Resume subscription").click()
    expect(current_plan(page)).to_contain_text("Renews on")
    expect(page.get_by_role("button", name="Cancel subscription")).to_be_visible()

    assert page.evaluate("window.noFullReload") is True, "every change swapped the panel in place"
    page.screenshot(path=f"{SHOTS}/subscription-final-{backend}.png", full_page=True)


def test_a_refused_change_shows_its_reason_in_place(live_server, page):
    sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    page.get_by_role("link", name="Downgrade to Pro").click()
    page.locator("#plan-change-dialog").get_by_role("button", name="Schedule the move").click()
    expect(current_plan(page)).to_contain_text("Moves to Pro on")
    # Free is still offered; the server refuses a second scheduled move and says why.
    page.get_by_role("link", name="Downgrade to Free").click()
    expect(page.locator("#billing-notice").get_by_role("alert")).to_contain_text("call it off first")
    expect(current_plan(page)).to_contain_text("Moves to Pro on")
