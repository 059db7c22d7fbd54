import logging

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from tests.conftest import login
from tests.factories import make_provider, make_provider_config, make_user
from tests.providers.fake_provider import GOOD_KEY
from webapp.accounts.models import AuditEvent
from webapp.extensions import db
from webapp.providers.crypto import decrypt_api_key
from webapp.providers.models import UserProviderConfig

HTMX = {"HX-Request": "true"}
WRONG_KEY = "sk-test-NotTheRightKey-000111222333"


@pytest.fixture
def ada(client, db_session):
    user = make_user(display_name="Ada")
    login(client, user)
    return user


@pytest.fixture
def provider(db_session):
    return make_provider(slug="acme", name="Acme AI", capabilities=["chat", "fine_tuning"])


def config_of(user, provider) -> UserProviderConfig | None:
    return db.session.scalar(
        select(UserProviderConfig).filter_by(user_id=user.id, provider_id=provider.id)
    )


def save_key(client, provider, api_key, headers=HTMX):
    return client.post(f"/account/providers/{provider.slug}/key", data={f"{provider.slug}-key-api_key": api_key}, headers=headers)


def save_settings(client, provider, base_url, enabled=True, headers=HTMX):
    data = {f"{provider.slug}-settings-base_url": base_url}
    if enabled:
        data[f"{provider.slug}-settings-is_enabled"] = "y"
    return client.post(f"/account/providers/{provider.slug}/settings", data=data, headers=headers)


def test_page_lists_enabled_providers_with_capabilities_and_docs(client, ada, provider):
    make_provider(name="Hidden Co", is_enabled=False)
    page = client.get("/account/providers").get_data(as_text=True)
    assert "Acme AI" in page and "fine tuning" in page and "https://docs.provider.test" in page
    assert "Hidden Co" not in page
    assert "No key" in page


def test_page_query_count_does_not_grow_with_providers(client, ada, provider, count_queries):
    with count_queries() as few:
        client.get("/account/providers")
    for _ in range(4):
        make_provider_config(ada, make_provider(), api_key=GOOD_KEY)
    with count_queries() as many:
        client.get("/account/providers")
    assert many.count == few.count


def test_saving_a_key_shows_it_masked_and_stores_only_ciphertext(client, ada, provider, db_session):
    response = save_key(client, provider, GOOD_KEY)
    assert response.status_code == 200
    card = response.get_data(as_text=True)
    assert card.lstrip().startswith('<article class="card provider-card" id="provider-acme"')
    assert f"•••• {GOOD_KEY[-4:]}" in card and GOOD_KEY not in card
    db_session.expire_all()
    config = config_of(ada, provider)
    assert config.api_key_last4 == GOOD_KEY[-4:] and decrypt_api_key(config) == GOOD_KEY
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_key.add")).one()
    assert event.actor_id == ada.id and GOOD_KEY not in str(event.changes)


def test_raw_key_appears_in_no_response_log_line_or_database_column(client, ada, provider, fake_provider, caplog, db_session):
    caplog.set_level(logging.DEBUG)
    responses = [
        save_settings(client, provider, fake_provider.url("/v1")),
        save_key(client, provider, WRONG_KEY),
        client.post(f"/account/providers/configs/{config_of(ada, provider).id}/test", headers=HTMX),
        save_key(client, provider, GOOD_KEY),
        client.post(f"/account/providers/configs/{config_of(ada, provider).id}/test", headers=HTMX),
        save_key(client, provider, "short", headers={}),
        client.get("/account/providers"),
    ]
    bodies = [r.get_data(as_text=True) for r in responses]
    assert "HTTP 401" in bodies[2] and "Connected: 3 models available." in bodies[4]
    for secret in (GOOD_KEY, WRONG_KEY):
        assert not any(secret in body for body in bodies), "a response echoes the key"
        assert secret not in caplog.text
    db_session.expire_all()
    for table in db.metadata.sorted_tables:
        for row in db_session.execute(sa.select(table)):
            for value in row:
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                for secret in (GOOD_KEY, WRONG_KEY):
                    assert secret not in text and secret[:12] not in text, f"{table.name} holds the key"


def test_test_connection_shows_the_outcome_inline(client, ada, provider, fake_provider, db_session):
    config = make_provider_config(ada, provider, api_key=WRONG_KEY, base_url=fake_provider.url("/v1"))
    card = client.post(f"/account/providers/configs/{config.id}/test", headers=HTMX).get_data(as_text=True)
    assert 'role="alert"' in card and "Connection failed" in card and "HTTP 401: Incorrect API key provided: [redacted]" in card
    assert WRONG_KEY not in card
    db_session.expire_all()
    assert "Incorrect API key provided: [redacted]" in config_of(ada, provider).last_error


def test_test_connection_times_out_with_the_configured_timeout(client, ada, provider, fake_provider, short_timeout, db_session):
    config = make_provider_config(ada, provider, api_key=GOOD_KEY, base_url=fake_provider.url("/slow"))
    card = client.post(f"/account/providers/configs/{config.id}/test", headers=HTMX).get_data(as_text=True)
    assert f"no answer within {short_timeout:g} s" in card


def test_test_connection_without_a_key_asks_for_one(client, ada, provider):
    config = make_provider_config(ada, provider)
    card = client.post(f"/account/providers/configs/{config.id}/test", headers=HTMX).get_data(as_text=True)
    assert "Add an API key first." in card


def test_replacing_and_deleting_a_key_are_audited(client, ada, provider, db_session):
    save_key(client, provider, WRONG_KEY)
    card = save_key(client, provider, GOOD_KEY).get_data(as_text=True)
    assert f"•••• {GOOD_KEY[-4:]}" in card and 'hx-confirm="Replace the stored Acme AI key' in card
    config_id = config_of(ada, provider).id
    card = client.post(f"/account/providers/configs/{config_id}/key/delete", headers=HTMX).get_data(as_text=True)
    assert "Acme AI key deleted." in card and "No key" in card
    db_session.expire_all()
    config = config_of(ada, provider)
    assert config.api_key_ciphertext is None and config.api_key_last4 is None
    actions = db_session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == config_id).order_by(AuditEvent.id)
    ).all()
    assert actions == ["provider_key.add", "provider_key.replace", "provider_key.delete"]


def test_invalid_key_is_refused_with_422(client, ada, provider, db_session):
    response = save_key(client, provider, "abc")
    assert response.status_code == 422 and "That does not look like an API key." in response.get_data(as_text=True)
    assert config_of(ada, provider) is None


@pytest.mark.parametrize("base_url, message", [
    ("http://api.example.com/v1", "only allowed for hosts the operator has allowed"),
    ("ftp://files.example.com", "http:// or https://"),
])
def test_invalid_base_url_is_refused_with_nothing_changed(client, ada, provider, base_url, message, db_session):
    make_provider_config(ada, provider, base_url="https://proxy.example.com/v1")
    response = save_settings(client, provider, base_url)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    db_session.expire_all()
    assert config_of(ada, provider).base_url == "https://proxy.example.com/v1"


def test_invalid_base_url_without_htmx_renders_the_page_with_errors(client, ada, provider):
    response = save_settings(client, provider, "http://api.example.com/v1", headers={})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and "<h1>Provider keys</h1>" in page and "only allowed for hosts the operator has allowed" in page


def test_settings_saved_without_htmx_redirect_with_a_flash(app, client, ada, provider, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "PROVIDER_HOST_ALLOWLIST", ["localhost:11434"])
    response = save_settings(client, provider, "http://localhost:11434/v1", enabled=False, headers={})
    assert response.status_code == 302 and response.headers["Location"] == "/account/providers"
    assert "Acme AI settings saved." in client.get("/account/providers").get_data(as_text=True)
    db_session.expire_all()
    config = config_of(ada, provider)
    assert config.base_url == "http://localhost:11434/v1" and config.is_enabled is False


def test_another_users_config_is_404(client, ada, provider, db_session):
    theirs = make_provider_config(make_user(), provider, api_key=GOOD_KEY)
    for action in ("test", "key/delete"):
        assert client.post(f"/account/providers/configs/{theirs.id}/{action}", headers=HTMX).status_code == 404
    db_session.expire_all()
    assert db_session.get(UserProviderConfig, theirs.id).api_key_ciphertext is not None


def test_disabled_or_unknown_provider_is_404(client, ada, db_session):
    hidden = make_provider(is_enabled=False)
    assert save_key(client, hidden, GOOD_KEY).status_code == 404
    assert client.post("/account/providers/no-such-provider/settings").status_code == 404


def test_csrf_is_required(client, ada, provider, csrf_enabled):
    assert save_key(client, provider, GOOD_KEY).status_code == 400
