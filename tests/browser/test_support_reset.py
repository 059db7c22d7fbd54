"""Support sends Grace a reset link; an admin reads the mail in the console's outbox, and Grace follows its
link, sets a new password and signs in."""
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"
NEW_PASSWORD = "grace's new passphrase 42"


def test_support_sends_a_reset_link_and_the_user_sets_a_new_password(live_server, page, backend):
    sign_in(page, live_server.url, "support@demo.test")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Support").click()
    expect(page.get_by_role("heading", name="Find a user", level=1)).to_be_visible()

    page.get_by_label("Email or name").press_sequentially("grace", delay=40)
    results = page.locator("#user-results")
    expect(results.get_by_role("link", name="Grace Hopper")).to_be_visible()
    expect(results.get_by_text("ada@demo.test")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"q=grace"))
    page.screenshot(path=f"{SHOTS}/support-search-{backend}.png", full_page=True)

    results.get_by_role("link", name="Grace Hopper").click()
    expect(page.get_by_role("heading", name="Grace Hopper", level=1)).to_be_visible()
    page.evaluate("window.noFullReload = true")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Send password reset link").click()
    expect(page.get_by_role("status").filter(has_text="reset link was mailed")).to_be_visible()
    assert dialogs == ["Mail grace@demo.test a link to choose a new password?"]
    assert page.evaluate("window.noFullReload") is True, "the panel was swapped, not the page reloaded"
    expect(page.locator("#user-panel").get_by_text("password_reset.issue")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/support-user-{backend}.png", full_page=True)

    assert "/password/reset/" not in page.content(), "support never sees the link"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))

    # The embedded start keeps mail in the outbox, which admins read in the console.
    sign_in(page, live_server.url, "admin@demo.test")
    page.goto(f"{live_server.url}/admin/")
    admin_menu = page.get_by_role("navigation", name="Admin")
    admin_menu.get_by_role("link", name="System").click()
    admin_menu.get_by_role("link", name="Mail outbox").click()
    newest = page.locator("table.model-list tbody tr").first
    expect(newest).to_contain_text("grace@demo.test")
    expect(newest).to_contain_text("support sent you a password reset link")
    newest.locator("a[title='View Record']").click()
    body = page.locator(".mail-body")
    expect(body).to_contain_text("Minion Console support (Sam Support) sent you a link")
    link = body.locator("a[href*='/password/reset/']").get_attribute("href")
    assert link.startswith(live_server.url + "/password/reset/")
    page.screenshot(path=f"{SHOTS}/support-reset-outbox-{backend}.png", full_page=True)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login"))

    page.goto(link)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.screenshot(path=f"{SHOTS}/support-reset-form-{backend}.png", full_page=True)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()

    page.get_by_label("Email").fill("grace@demo.test")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    page.goto(f"{live_server.url}/account")
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.get_by_text("this device")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/support-reset-account-{backend}.png", full_page=True)

    page.goto(link)
    expect(page.get_by_role("heading", name="This link no longer works")).to_be_visible()
