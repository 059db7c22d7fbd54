"""Ada adds a provider key, sees it masked, tests it against a local fake provider, replaces and deletes it."""
import pytest
from playwright.sync_api import expect

from tests.browser.helpers import sign_in
from tests.providers.fake_provider import GOOD_KEY, FakeProvider

pytestmark = pytest.mark.browser

WRONG_KEY = "sk-test-BrowserWrongKey-98765zyxw"
SHOTS = "test-artifacts"


@pytest.fixture(scope="module")
def fake_provider(live_server):
    with FakeProvider() as provider:
        live_server.app.config["PROVIDER_HOST_ALLOWLIST"] = [provider.host]
        yield provider


def test_add_test_replace_and_delete_a_provider_key(live_server, page, fake_provider, backend):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/providers")
    expect(page.get_by_role("heading", name="Provider keys", level=1)).to_be_visible()
    page.on("dialog", lambda dialog: dialog.accept())
    # Set on the window: it survives HTMX swaps and disappears on a full page load.
    page.evaluate("window.noFullReload = true")
    card = page.locator("#provider-openai")
    expect(card.get_by_label("API key")).to_be_hidden()
    expect(card.get_by_label("Use this provider")).not_to_be_checked()
    card.get_by_text("Add key").click()

    card.get_by_label("Base URL override").fill(fake_provider.url("/v1"))
    card.get_by_role("button", name="Save settings").click()
    expect(card.get_by_role("status")).to_have_text("OpenAI settings saved.")
    expect(card.locator("code.endpoint")).to_have_text(fake_provider.url("/v1"))

    card.get_by_label("API key").fill(GOOD_KEY)
    card.get_by_role("button", name="Save key").click()
    expect(card.locator(".masked-key")).to_have_text(f"•••• {GOOD_KEY[-4:]}")
    expect(card.get_by_label("API key")).to_have_value("")
    assert GOOD_KEY not in page.content()
    page.screenshot(path=f"{SHOTS}/providers-key-masked-{backend}.png", full_page=True)

    card.get_by_role("button", name="Test connection").click()
    expect(card.get_by_role("status")).to_have_text("Connected: 3 models available.")
    expect(card.locator(".badge-active")).to_have_text("Verified")
    page.screenshot(path=f"{SHOTS}/providers-verified-{backend}.png", full_page=True)

    card.get_by_label("API key").fill(WRONG_KEY)
    card.get_by_role("button", name="Replace key").click()
    expect(card.locator(".masked-key")).to_have_text(f"•••• {WRONG_KEY[-4:]}")
    card.get_by_role("button", name="Test connection").click()
    expect(card.get_by_role("alert")).to_contain_text("Connection failed")
    expect(card.locator(".last-error")).to_contain_text("HTTP 401: Incorrect API key provided: [redacted]")
    assert WRONG_KEY not in page.content() and WRONG_KEY[-6:] not in page.content()
    page.screenshot(path=f"{SHOTS}/providers-error-redacted-{backend}.png", full_page=True)

    card.get_by_role("button", name="Delete key").click()
    expect(card.get_by_role("status")).to_have_text("OpenAI key deleted.")
    expect(card.get_by_text("Not set")).to_be_visible()
    expect(card.get_by_role("button", name="Test connection")).to_have_count(0)
    assert page.evaluate("window.noFullReload") is True, "every step swapped the card in place"
    page.screenshot(path=f"{SHOTS}/providers-deleted-{backend}.png", full_page=True)


def test_invalid_base_url_shows_the_error_in_the_card(live_server, page):
    sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}/account/providers")
    card = page.locator("#provider-mistral")
    card.get_by_text("Add key").click()
    card.get_by_label("Base URL override").fill("http://api.mistral.example/v1")
    card.get_by_role("button", name="Save settings").click()
    expect(card.locator(".errors")).to_have_text("Use https://: plain http:// is only allowed for hosts the operator has allowed.")
    expect(card.get_by_label("Base URL override")).to_have_value("http://api.mistral.example/v1")
    page.screenshot(path=f"{SHOTS}/providers-invalid-url.png", full_page=True)
