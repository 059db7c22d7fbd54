from datetime import timedelta

import pytest
from flask import current_app
from sqlalchemy import select

from tests.factories import make_provider, make_provider_config, make_user
from tests.providers.fake_provider import GOOD_KEY, MODELS
from webapp.accounts.models import AuditEvent
from webapp.db import utcnow
from webapp.providers.services import (
    config_for, delete_api_key, enabled_provider, normalise_base_url, provider_cards, redact_secret, save_api_key,
    update_settings, verify_connection,
)

WRONG_KEY = "sk-test-WrongKey9876543210zyxwvuQRST"


@pytest.fixture
def allowlist(app, monkeypatch):
    """Sets PROVIDER_HOST_ALLOWLIST inside an app context."""
    with app.app_context():
        def allow(*hosts: str) -> None:
            monkeypatch.setitem(app.config, "PROVIDER_HOST_ALLOWLIST", list(hosts))

        allow()
        yield allow


@pytest.mark.parametrize("raw, stored, allowed", [
    ("", None, ()),
    ("  ", None, ()),
    ("https://api.example.com/v1/", "https://api.example.com/v1", ()),
    ("  https://api.example.com/X/  ", "https://api.example.com/X", ()),
    ("https://api.example.com/" + "a" * 476, "https://api.example.com/" + "a" * 476, ()),  # 500 characters
    ("http://localhost:11434/v1", "http://localhost:11434/v1", ("localhost:11434",)),
    ("http://localhost/v1", "http://localhost/v1", ("localhost:80",)),  # http's own port
    ("https://localhost/v1", "https://localhost/v1", ("localhost:443",)),  # https's own port
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1", ("127.0.0.1",)),
    ("http://[::1]:8080/v1", "http://[::1]:8080/v1", ("[::1]:8080",)),
])
def test_base_urls_accepted(allowlist, raw, stored, allowed):
    allowlist(*allowed)
    assert normalise_base_url(raw) == stored


HTTP_REFUSED = "Use https://: plain http:// is only allowed for hosts the operator has allowed."
NO_SCHEME = "Use an http:// or https:// URL, e.g. https://api.example.com/v1."
NO_CREDENTIALS = "Leave credentials out of the URL: the API key field holds the key."
NO_QUERY = "A base URL has no query string or #fragment."


@pytest.mark.parametrize("raw, allowed, reason", [
    ("http://api.example.com/v1", (), HTTP_REFUSED),
    ("http://localhost.evil.example/v1", (), HTTP_REFUSED),
    ("http://localhost:11434/v1", (), HTTP_REFUSED),
    ("http://localhost/v1", ("localhost:81",), HTTP_REFUSED),
    ("ftp://api.example.com", (), NO_SCHEME),
    ("javascript:alert(1)", (), NO_SCHEME),
    ("api.example.com/v1", (), NO_SCHEME),
    ("https:///v1", (), "Include the host name, e.g. https://api.example.com/v1."),
    ("https://user:secret@api.example.com/v1", (), NO_CREDENTIALS),
    ("https://user@api.example.com/v1", (), NO_CREDENTIALS),
    ("https://:secret@api.example.com/v1", (), NO_CREDENTIALS),
    ("https://api.example.com/v1?key=abc", (), NO_QUERY),
    ("https://api.example.com/v1#x", (), NO_QUERY),
    ("https://api.example.com:99999/v1", (), "The port is not a valid number."),
    ("https://api.example.com/a b", (), "A URL cannot contain spaces."),
    ("https://api.example.com/" + "a" * 477, (), "Use at most 500 characters."),
    ("https://127.0.0.1/v1", (), "That URL cannot be used: the host is a loopback address; "
                                 "only public addresses can be used."),
])
def test_base_urls_refused_with_a_reason(allowlist, raw, allowed, reason):
    allowlist(*allowed)
    with pytest.raises(ValueError) as refused:
        normalise_base_url(raw)
    assert str(refused.value) == reason


def test_redaction_removes_the_key_and_its_obvious_fragments():
    key = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx1234"
    text = f"Incorrect API key provided: {key}. Starts sk-proj-AbCd…Wx1234, masked sk-proj-****************1234."
    redacted = redact_secret(text, key)
    assert key not in redacted
    for fragment in ("AbCdEf", "Wx1234", "sk-proj-AbCd"):
        assert fragment not in redacted
    assert redacted.startswith("Incorrect API key provided: [redacted].")


def test_redaction_leaves_unrelated_text_alone():
    assert redact_secret("HTTP 500: upstream overloaded", "sk-xyz-0123456789") == "HTTP 500: upstream overloaded"


@pytest.fixture
def config_at(db_session, fake_provider):
    """A user's config holding ``api_key`` whose base URL is ``path`` on the fake provider."""

    def make(api_key: str, path: str = "/v1"):
        return make_provider_config(
            make_user(), make_provider(), api_key=api_key, base_url=fake_provider.url(path)
        )

    return make


def recorded_test(db_session, config) -> dict:
    """The changes audited for the one connection test of ``config``."""
    return db_session.scalars(select(AuditEvent.changes).where(AuditEvent.action == "provider_key.test",
                                                               AuditEvent.object_id == config.id)).one()


def test_verify_connection_records_success(config_at, db_session):
    config = config_at(GOOD_KEY)
    config.last_error = "HTTP 500 once"
    kind, message = verify_connection(config, timeout=5)
    assert (kind, message) == ("success", f"Connected: {len(MODELS)} models available.")
    assert config.last_verified_at is not None and config.last_error is None
    actions = db_session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == config.id)).all()
    assert set(actions) == {"provider_key.use", "provider_key.test"}
    assert recorded_test(db_session, config) == {"ok": True, "models": len(MODELS)}
    assert db_session.scalars(select(AuditEvent.changes).where(AuditEvent.action == "provider_key.use")).one() \
        == {"purpose": "test_connection"}


@pytest.mark.parametrize("count, message", [(1, "Connected: 1 model available."), (2, "Connected: 2 models available.")])
def test_the_connected_message_counts_the_models_in_words(config_at, count, message):
    assert verify_connection(config_at(GOOD_KEY, f"/first-{count}"), timeout=5) == ("success", message)


def test_verify_connection_sends_the_key_as_a_bearer_token(config_at, fake_provider):
    verify_connection(config_at(GOOD_KEY), timeout=5)
    path, headers = fake_provider.requests[-1]
    assert path == "/v1/models" and headers["Authorization"] == f"Bearer {GOOD_KEY}"


@pytest.mark.parametrize("api_style, base_path, key_headers, refusal", [
    ("anthropic", "/anthropic", {"x-api-key": GOOD_KEY, "anthropic-version": "2023-06-01"},
     "HTTP 401: invalid x-api-key"),
    ("google", "/google/v1beta", {"x-goog-api-key": GOOD_KEY},
     "HTTP 400: API key not valid. Please pass a valid API key."),
], ids=["anthropic", "google"])
def test_each_request_style_lists_models_with_the_key_where_its_provider_expects_it(
        db_session, fake_provider, api_style, base_path, key_headers, refusal):
    provider = make_provider(api_style=api_style, default_base_url=fake_provider.url(base_path))
    config = make_provider_config(make_user(), provider, api_key=GOOD_KEY)
    assert verify_connection(config, timeout=5) == ("success", f"Connected: {len(MODELS)} models available.")
    path, headers = fake_provider.requests[-1]
    assert path == f"{base_path}/{'v1/' if api_style == 'anthropic' else ''}models"
    assert {name: headers.get(name) for name in key_headers} == key_headers
    assert "Authorization" not in headers, "the key goes in the style's own header, not as a bearer token"

    wrong = make_provider_config(make_user(), provider, api_key=WRONG_KEY)
    assert verify_connection(wrong, timeout=5) == ("error", "Connection failed; the provider's answer is under Last error.")
    assert wrong.last_error == refusal and wrong.last_verified_at is None


def test_rejected_key_is_recorded_with_the_echoed_key_redacted(config_at, db_session):
    config = config_at(WRONG_KEY)
    kind, message = verify_connection(config, timeout=5)
    assert (kind, message) == ("error", "Connection failed; the provider's answer is under Last error.")
    assert "HTTP 401" in config.last_error and "Incorrect API key provided" in config.last_error
    assert recorded_test(db_session, config) == {"ok": False}
    for text in (message, config.last_error):
        assert WRONG_KEY not in text and WRONG_KEY[:10] not in text and WRONG_KEY[-6:] not in text
    assert config.last_verified_at is None


@pytest.mark.parametrize("path", ["/moved", "/same-host"])
def test_no_redirect_is_followed(config_at, fake_provider, path):
    config = config_at(GOOD_KEY, path)
    before = len(fake_provider.requests)
    kind, _ = verify_connection(config, timeout=5)
    assert kind == "error" and "redirects are not followed" in config.last_error
    assert [p for p, _ in fake_provider.requests[before:]] == [f"{path}/models"], "the redirect was not followed"


def test_slow_provider_times_out(config_at):
    config = config_at(GOOD_KEY, "/slow")
    kind, _ = verify_connection(config, timeout=0.3)
    assert kind == "error" and "0.3 s" in config.last_error


def test_unreachable_provider_is_an_error(config_at):
    config = config_at(GOOD_KEY)
    config.base_url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
    current_app.config["PROVIDER_HOST_ALLOWLIST"].append("127.0.0.1:9")
    kind, _ = verify_connection(config, timeout=2)
    assert kind == "error" and config.last_error.startswith("cannot connect")


def verified_config(user, provider):
    config = make_provider_config(user, provider, api_key=GOOD_KEY)
    config.last_verified_at = utcnow() - timedelta(hours=1)
    return config


def test_settings_change_is_audited_and_resets_verification(db_session):
    user, provider = make_user(), make_provider()
    config = verified_config(user, provider)
    update_settings(user, provider, "https://proxy.example.com/v1", False)
    assert config.base_url == "https://proxy.example.com/v1" and config.is_enabled is False
    assert config.last_verified_at is None, "a new endpoint is not verified"
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_config.update")).one()
    assert event.changes == {"provider": provider.slug, "base_url": [None, "https://proxy.example.com/v1"],
                             "is_enabled": [True, False]}


def test_switching_a_config_off_and_on_keeps_it_verified(db_session):
    user, provider = make_user(), make_provider()
    config = verified_config(user, provider)
    verified_at = config.last_verified_at
    update_settings(user, provider, None, False)
    update_settings(user, provider, None, True)
    assert config.last_verified_at == verified_at
    assert update_settings(user, provider, None, True) is config
    assert db_session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == config.id,
                                                              AuditEvent.action == "provider_config.update")).all() \
        == ["provider_config.update"] * 2, "saving unchanged settings records nothing"


def test_a_replaced_key_is_no_longer_verified_and_its_old_error_is_cleared(db_session):
    user, provider = make_user(), make_provider()
    config = verified_config(user, provider)
    config.last_error = "HTTP 500 once"
    assert save_api_key(user, provider, WRONG_KEY) is config
    assert (config.last_verified_at, config.last_error, config.api_key_last4) == (None, None, WRONG_KEY[-4:])
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_key.replace")).one()
    assert event.changes == {"provider": provider.slug, "last4": WRONG_KEY[-4:]}


def test_key_copied_from_another_row_is_reported_without_calling_the_provider(config_at, fake_provider, db_session,
                                                                              caplog):
    mine, theirs = config_at(GOOD_KEY), config_at(WRONG_KEY)
    theirs.api_key_ciphertext = mine.api_key_ciphertext
    before = len(fake_provider.requests)
    outcome = verify_connection(theirs, timeout=5)
    assert outcome == ("error", "The stored key cannot be used; it is explained under Last error.")
    assert theirs.last_error == ("The stored key cannot be used (the stored key belongs to another account or "
                                 "provider). Replace it.")
    assert recorded_test(db_session, theirs) == {"ok": False, "reason": "unreadable"}
    assert (f"provider config {theirs.id}: stored key unreadable: the stored key belongs to another account or "
            f"provider") in caplog.messages
    assert len(fake_provider.requests) == before


def test_redaction_of_a_short_or_empty_secret():
    assert redact_secret("token abc1 leaked, abc seen", "abc1") == "token [redacted] leaked, abc seen"
    assert redact_secret("nothing to hide", "") == "nothing to hide"


def test_a_users_config_is_found_only_by_them_and_only_while_the_provider_is_enabled(db_session):
    user, provider = make_user(), make_provider()
    config = make_provider_config(user, provider, api_key=GOOD_KEY)
    second = make_provider_config(user, make_provider(), api_key=GOOD_KEY)
    assert [config_for(user, config.id), config_for(user, second.id)] == [config, second], "each by its own id"
    assert config_for(make_user(), config.id) is None
    provider.is_enabled = False
    db_session.flush()
    assert config_for(user, config.id) is None


def test_cards_list_every_enabled_provider_by_name_with_only_this_users_config(db_session):
    user, other = make_user(), make_user()
    zed, alpha = make_provider(name="Zed AI"), make_provider(name="Alpha AI")
    make_provider(name="Mid AI", is_enabled=False)
    mine = make_provider_config(user, zed, api_key=GOOD_KEY)
    make_provider_config(other, alpha, api_key=GOOD_KEY)
    cards = [(card.provider.id, card.config) for card in provider_cards(user)
             if card.provider.id in (zed.id, alpha.id)]
    assert cards == [(alpha.id, None), (zed.id, mine)]
    assert all(card.provider.is_enabled for card in provider_cards(user))


def test_each_user_has_one_config_per_provider(db_session):
    user, other = make_user(), make_user()
    first, second = make_provider(), make_provider()
    theirs = save_api_key(other, first, GOOD_KEY)
    mine_first, mine_second = save_api_key(user, first, GOOD_KEY), save_api_key(user, second, WRONG_KEY)
    assert len({theirs.id, mine_first.id, mine_second.id}) == 3
    assert (mine_second.user_id, mine_second.provider_id, mine_second.settings) == (user.id, second.id, {})
    assert save_api_key(user, first, WRONG_KEY) is mine_first


def test_an_enabled_provider_is_found_by_its_slug(db_session):
    first, second = make_provider(), make_provider()
    assert enabled_provider(second.slug) is second and enabled_provider(first.slug) is first
    second.is_enabled = False
    db_session.flush()
    assert enabled_provider(second.slug) is None


def test_deleting_a_key_forgets_it_and_its_verification(db_session):
    user, provider = make_user(), make_provider()
    config = verified_config(user, provider)
    config.last_error = "old"
    delete_api_key(config)
    assert (config.api_key_ciphertext, config.api_key_last4, config.last_verified_at, config.last_error) == (
        None, None, None, None)
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_key.delete")).one()
    assert event.changes == {"provider": provider.slug, "last4": GOOD_KEY[-4:]}


def test_a_word_sharing_less_than_a_fragment_with_the_key_is_kept():
    # "fghij" (five characters) is in the key, but no six-character run of the word is.
    assert redact_secret("code qqqqfghij", "sk-abcdefghij") == "code qqqqfghij"
    assert redact_secret("code qqqefghij", "sk-abcdefghij") == "code [redacted]"
