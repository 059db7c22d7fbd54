"""The playground on the minion page: a provider's chat completion or an internal artifact answers, usage is metered."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.factories import (
    make_minion, make_plan, make_provider, make_provider_config, make_subscription, make_usage, make_user,
)
from tests.providers.fake_provider import CHAT_FRAME_TOKENS, GOOD_KEY, FakeProvider
from tests.training.engine_helpers import queue_internal_job
from tests.conftest import login
from webapp import quotas
from webapp.billing.models import UsageRecord
from webapp.billing.services import usage_meters
from webapp.extensions import db
from webapp.providers.models import AIModel
from webapp.quotas import QuotaExceeded
from webapp.training.playground import PlaygroundRefused, Target, ask, count_tokens, internal_answer
from webapp.training.runtime import execute_job


@pytest.fixture(scope="module")
def fake(app):
    with FakeProvider() as provider:
        app.config["PROVIDER_HOST_ALLOWLIST"] = [provider.host]
        yield provider
        app.config["PROVIDER_HOST_ALLOWLIST"] = []


def provider_minion(fake, api_key: str = GOOD_KEY, plan_quotas: dict | None = None, **user_fields):
    owner = make_user(**user_fields)
    make_subscription(owner, make_plan(quotas=plan_quotas or {"tokens": 100_000, "requests": 100}))
    provider = make_provider(name="Fake AI", api_style="openai", default_base_url=fake.url("/v1"))
    make_provider_config(owner, provider, api_key=api_key)
    model = AIModel(model_type="external", provider_id=provider.id, model_key="fake-small", name="Fake small")
    db.session.add(model)
    db.session.flush()
    return owner, make_minion(owner, model=model)


def usage_of(user) -> dict[str, int]:
    return quotas.period_usage(user.id, quotas.allowance(user))


def test_an_external_model_answers_through_the_provider_and_its_usage_is_metered(db_session, fake):
    owner, minion = provider_minion(fake)
    prompt = "Where is my parcel today?"
    answer = ask(owner, minion, prompt)
    assert answer.text == f"fake-small heard: {prompt}"
    assert fake.chats[-1]["messages"] == [{"role": "user", "content": prompt}]
    assert fake.chats[-1]["max_tokens"] == 512
    expected = {"requests": 1, "input_tokens": 5 + CHAT_FRAME_TOKENS, "output_tokens": 7 + CHAT_FRAME_TOKENS}
    assert (answer.input_tokens, answer.output_tokens) == (expected["input_tokens"], expected["output_tokens"])
    assert usage_of(owner) == expected
    tokens = next(meter for meter in usage_meters(owner, owner_subscription(owner)) if meter.key == "tokens")
    assert tokens.used == expected["input_tokens"] + expected["output_tokens"]


def owner_subscription(owner):
    from webapp.billing.services import live_subscription
    return live_subscription(owner)


def test_a_refused_key_is_explained_without_the_key_and_nothing_is_metered(db_session, fake):
    bad_key = "sk-wrong-Key9876543210zyxw"
    owner, minion = provider_minion(fake, api_key=bad_key)
    with pytest.raises(PlaygroundRefused) as refusal:
        ask(owner, minion, "Hello")
    assert "HTTP 401" in str(refusal.value) and bad_key not in str(refusal.value) and "9876543210" not in str(refusal.value)
    assert usage_of(owner) == {}


@pytest.mark.parametrize("quota", ["tokens", "requests"])
def test_a_blocked_metric_refuses_the_call_before_the_provider_sees_it(db_session, fake, quota):
    owner, minion = provider_minion(fake, plan_quotas={"tokens": 50, "requests": 2})
    make_usage(owner, "input_tokens" if quota == "tokens" else "requests", 50 if quota == "tokens" else 2)
    calls = len(fake.chats)
    with pytest.raises(QuotaExceeded) as refusal:
        ask(owner, minion, "Hello")
    assert refusal.value.key == quota and len(fake.chats) == calls


def test_a_metric_billed_as_overage_does_not_refuse(db_session, fake):
    owner, minion = provider_minion(fake, plan_quotas={"tokens": 10, "requests": 100,
                                                       "overage": {"tokens": {"per": 1000, "cents": 2}}})
    make_usage(owner, "input_tokens", 10)
    assert ask(owner, minion, "Hello").text == "fake-small heard: Hello"


def test_an_unverified_user_makes_no_provider_call(db_session, fake):
    owner, minion = provider_minion(fake, email_verified_at=None)
    calls = len(fake.chats)
    with pytest.raises(PlaygroundRefused, match="Confirm your email address"):
        ask(owner, minion, "Hello")
    assert len(fake.chats) == calls


def test_a_provider_on_a_private_address_is_refused_by_the_egress_rules(app, db_session, fake):
    owner, minion = provider_minion(fake)
    app.config["PROVIDER_HOST_ALLOWLIST"] = []
    try:
        with pytest.raises(PlaygroundRefused, match="Cannot connect to Fake AI"):
            ask(owner, minion, "Hello")
    finally:
        app.config["PROVIDER_HOST_ALLOWLIST"] = [fake.host]
    assert usage_of(owner) == {}


def test_a_minion_with_nothing_to_answer_with_says_so(db_session):
    owner = make_user()
    with pytest.raises(PlaygroundRefused, match="has no trained version"):
        ask(owner, make_minion(owner), "Hello")


def test_an_internal_model_answers_from_its_trained_artifact(app, db_session, store):
    old = app.config["JOB_HEARTBEAT_SECONDS"]
    app.config["JOB_HEARTBEAT_SECONDS"] = 3600
    try:
        owner = make_user()
        minion = make_minion(owner)
        job = queue_internal_job(owner, minion, epochs=5)
        assert execute_job(job.id, "celery@test") == "succeeded"
    finally:
        app.config["JOB_HEARTBEAT_SECONDS"] = old
    db.session.expire_all()
    minion = db.session.get(type(minion), minion.id)
    prompt = "My invoice shows the wrong amount, please refund me"
    answer = ask(owner, minion, prompt)
    assert answer.text and answer.label.endswith(minion.model_version.version)
    assert (answer.input_tokens, answer.output_tokens) == (10, count_tokens(answer.text))
    assert usage_of(owner)["requests"] == 1


def test_an_internal_artifact_that_cannot_be_read_is_explained(store):
    missing = Target("Support bot v3", None, artifact_uri=str(store / "gone.joblib"))
    with pytest.raises(PlaygroundRefused) as refused:
        internal_answer(missing, "Hello")
    assert str(refused.value) == ("The trained model could not be loaded (FileNotFoundError); "
                                  "train the minion again.")


@pytest.mark.parametrize(("content", "error"), [(b"", "EOFError"), (b"\x80\x04\x95", "error")],
                         ids=["empty", "cut-in-its-header"])
def test_a_truncated_internal_artifact_is_explained_too(store, content, error):
    store.mkdir(parents=True, exist_ok=True)
    truncated = store / "truncated.joblib"
    truncated.write_bytes(content)
    with pytest.raises(PlaygroundRefused) as refused:
        internal_answer(Target("Support bot v3", None, artifact_uri=str(truncated)), "Hello")
    assert str(refused.value) == f"The trained model could not be loaded ({error}); train the minion again."


def test_the_playground_answers_the_owner_as_a_partial_for_htmx_and_a_page_otherwise(client, db_session, fake):
    owner, minion = provider_minion(fake)
    login(client, owner)
    url = f"/minions/{minion.id}/playground"
    partial = client.post(url, data={"prompt": "Hi there"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200
    body = partial.get_data(as_text=True)
    assert "fake-small heard: Hi there" in body and "<html" not in body and GOOD_KEY not in body
    page = client.post(url, data={"prompt": "Again"})
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)
    assert "fake-small heard: Again" in page.get_data(as_text=True)
    empty = client.post(url, data={"prompt": ""}, headers={"HX-Request": "true"})
    assert empty.status_code == 422 and "Write something" in empty.get_data(as_text=True)
    assert db.session.scalar(select(func.count(UsageRecord.id)).where(UsageRecord.user_id == owner.id)) == 6


def test_the_minion_page_shows_the_playground_to_its_owner_only(client, db_session, fake):
    owner, minion = provider_minion(fake)
    login(client, owner)
    assert "Try " + minion.name in client.get(f"/minions/{minion.id}").get_data(as_text=True)
    client.post("/logout")
    login(client, make_user())
    assert "playground-prompt" not in client.get(f"/minions/{minion.id}").get_data(as_text=True)
