"""Ada tries her minion in the playground against a local fake provider and sees her token meter move
and its forecast change."""
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.helpers import sign_in
from tests.providers.fake_provider import CHAT_FRAME_TOKENS, GOOD_KEY, FakeProvider
from tests.factories import make_minion, make_provider, make_provider_config
from webapp.accounts.models import User
from webapp.billing import services
from webapp.db import utcnow
from webapp.extensions import db
from webapp.providers.models import AIModel

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"
PROMPT = "Write a haiku about invoices"


@pytest.fixture(scope="module")
def fake_provider(live_server):
    with FakeProvider() as provider:
        live_server.app.config["PROVIDER_HOST_ALLOWLIST"] = [provider.host]
        yield provider
        live_server.app.config["PROVIDER_HOST_ALLOWLIST"] = []


@pytest.fixture(scope="module")
def adas_minion(live_server, fake_provider):
    """A minion of ada's on the fake provider's model, with her key for it; her period began an hour ago,
    with 500 tokens, so the playground's few tokens are what sets the forecast."""
    with live_server.app.app_context():
        ada = db.session.scalar(select(User).where(User.email == "ada@demo.test"))
        subscription = services.live_subscription(ada)
        subscription.current_period_start = utcnow() - timedelta(hours=1)
        subscription.current_period_end = subscription.current_period_start + timedelta(days=30)
        subscription.plan.quotas = {**subscription.plan.quotas, "tokens": 500}
        provider = make_provider(name="Fake AI", api_style="openai", default_base_url=fake_provider.url("/v1"))
        make_provider_config(ada, provider, api_key=GOOD_KEY)
        model = AIModel(model_type="external", provider_id=provider.id, model_key="fake-small", name="Fake small")
        db.session.add(model)
        db.session.flush()
        minion = make_minion(ada, model=model, name="Haiku Helper")
        db.session.commit()
        return minion.id


def tokens_meter(page) -> int:
    text = page.get_by_role("progressbar", name="Tokens").get_attribute("aria-valuetext")
    return int(text.split(" of ")[0].replace(",", ""))


def tokens_forecast(page) -> str:
    return page.locator("#meter-tokens-note").inner_text()


def test_ada_tries_her_minion_and_her_token_meter_moves(live_server, page, adas_minion, backend):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    before = tokens_meter(page)
    assert tokens_forecast(page) == "At this rate you reach your token limit: not this period."

    page.goto(f"{live_server.url}/minions/{adas_minion}")
    playground = page.locator("section", has=page.get_by_role("heading", name="Try Haiku Helper"))
    expect(playground.get_by_text("Ask Haiku Helper something")).to_be_visible()
    page.evaluate("window.noFullReload = true")
    playground.get_by_label("Prompt").fill(PROMPT)
    playground.get_by_role("button", name="Ask Haiku Helper").click()
    answer = playground.locator("#playground-answer")
    expect(answer).to_contain_text(f"fake-small heard: {PROMPT}")
    expect(answer).to_contain_text("Fake small")
    assert page.evaluate("window.noFullReload") is True, "the answer was swapped in beside the form"
    assert GOOD_KEY not in page.content()
    page.screenshot(path=f"{SHOTS}/playground-answer-{backend}.png", full_page=True)

    page.goto(f"{live_server.url}/account/subscription")
    spent = (len(PROMPT.split()) + CHAT_FRAME_TOKENS) + (len(PROMPT.split()) + 2 + CHAT_FRAME_TOKENS)
    assert tokens_meter(page) == before + spent
    # About 20 tokens in the hour since the period began: the other 480 take about a day at that rate.
    assert tokens_forecast(page).startswith("At this rate you reach your token limit on ")
    page.screenshot(path=f"{SHOTS}/playground-meter-{backend}.png", full_page=True)


def test_an_empty_prompt_is_refused_in_place(live_server, page, adas_minion):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/minions/{adas_minion}")
    page.evaluate("document.getElementById('playground-prompt').removeAttribute('required')")
    page.get_by_role("button", name="Ask Haiku Helper").click()
    expect(page.locator("#playground-answer [role=alert]")).to_contain_text("Write something")
