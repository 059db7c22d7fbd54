"""A visitor signs up, confirms the address from the mail, lands on the free plan, creates a minion,
uploads a dataset with two bad lines, fixes it, and finds the minion on the leaderboard from its page."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import link_in_latest_mail

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"
EMAIL = "newcomer@example.test"
PASSWORD = "a long browser passphrase"
GOOD_ROW = '{"messages": [{"role": "user", "content": "Hi %d"}, {"role": "assistant", "content": "Hello %d"}]}\n'
GOOD = "".join(GOOD_ROW % (n, n) for n in range(1, 6))
BAD = GOOD_ROW % (1, 1) + GOOD_ROW % (2, 2) + '{"prompt": "no completion"}\n' + GOOD_ROW % (4, 4) + "{oops\n"


def shoot(page, name: str) -> None:
    """The page at desktop width and at 375 px, for a person to look at."""
    page.screenshot(path=f"{SHOTS}/self-service-{name}.png", full_page=True)
    size = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 800})
    page.screenshot(path=f"{SHOTS}/self-service-{name}-375.png", full_page=True)
    page.set_viewport_size(size)


def upload(page, content: str) -> None:
    page.get_by_label("File", exact=True).set_input_files(
        {"name": "greetings.jsonl", "mimeType": "application/jsonl", "buffer": content.encode()})
    page.get_by_label("Name", exact=True).fill("Greetings")
    page.get_by_role("button", name="Upload and check").click()


def test_a_visitor_signs_up_and_builds_a_minion_and_a_dataset(live_server, page):
    base = live_server.url
    page.goto(f"{base}/login")
    page.get_by_role("link", name="Create an account").click()
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    shoot(page, "signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Display name").fill("New <b>Comer</b>")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    # Sign-up hashes the password whether or not the address is taken: allow a slow machine its time.
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible(timeout=15_000)

    page.goto(link_in_latest_mail(live_server.app, EMAIL, base))
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.get_by_text("your email address is confirmed")).to_be_visible()

    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Welcome, New <b>Comer</b>")).to_be_visible()
    plan_card = page.locator("section", has=page.get_by_role("heading", name="Your plan"))
    expect(plan_card.get_by_text("Free", exact=True)).to_be_visible()
    checklist = page.locator("section.checklist")
    expect(checklist.get_by_text("Done: Confirm your email address")).to_be_attached()
    expect(checklist.get_by_role("link", name="Create a minion")).to_be_visible()
    shoot(page, "home-checklist")

    checklist.get_by_role("link", name="Create a minion").click()
    expect(page.get_by_text("You have no minions yet")).to_be_visible()
    page.get_by_label("Name").fill("Browser Buddy")
    page.get_by_role("button", name="Create minion").click()
    expect(page.get_by_role("heading", name="Browser Buddy", exact=True)).to_be_visible()
    minion_url = page.url
    assert re.search(r"/minions/\d+$", minion_url)

    page.goto(f"{base}/datasets/new")
    upload(page, BAD)
    report = page.locator(".validation-report")
    expect(report.get_by_role("heading")).to_have_text(re.compile("2 problems"))
    expect(report.get_by_role("row", name=re.compile(r"^3 "))).to_contain_text('needs "messages"')
    expect(report.get_by_role("row", name=re.compile(r"^5 "))).to_contain_text("not valid JSON")
    shoot(page, "upload-report")
    upload(page, GOOD)
    expect(page.get_by_text("5 rows accepted")).to_be_visible()
    expect(page.get_by_role("cell", name="Hello 5")).to_be_visible()
    shoot(page, "dataset")

    page.get_by_role("link", name="Minions", exact=True).click()
    shoot(page, "minion-list")
    page.get_by_role("link", name="Browser Buddy").click()
    expect(page).to_have_url(minion_url)
    shoot(page, "minion")
    page.locator(".ranks").get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"/leaderboard.*#minion-\d+$"))
    page.wait_for_load_state()
    row = page.locator(f"#minion-{minion_url.rsplit('/', 1)[1]}")
    expect(row).to_be_visible(timeout=15_000)
    expect(row.get_by_role("link", name="Browser Buddy")).to_have_attribute("href", re.compile(r"/minions/\d+$"))

    page.goto(f"{base}/datasets/public")
    expect(page.get_by_role("heading", name="Public datasets")).to_be_visible()
    shoot(page, "catalogue")
    page.goto(f"{minion_url}/delete")
    expect(page.get_by_role("heading", name="Delete Browser Buddy for good?")).to_be_visible()
    shoot(page, "minion-delete-confirm")
    page.get_by_role("link", name="Keep it").click()
    expect(page).to_have_url(minion_url)
    page.get_by_role("link", name="Delete…").click()
    confirm = page.locator("#minion-confirm-slot")
    expect(confirm.get_by_role("heading", name="Delete Browser Buddy for good?")).to_be_visible()
    confirm.get_by_role("button", name="Keep it").click()
    expect(confirm).to_be_empty()
