import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from tests.factories import make_provider, make_provider_config, make_user
from webapp.accounts.models import AuditEvent
from webapp.providers.cli import rotate_keys_command
from webapp.providers.crypto import ApiKeyUnreadable, decrypt_api_key, is_under_newest_key
from webapp.providers.services import rotate_encryption

KEYS = [f"sk-test-rotation-{n:02d}-abcdefghijkl" for n in range(3)]


@pytest.fixture
def encryption_keys(app):
    """Swap in known encryption keys for one test."""
    original = app.config["PROVIDER_KEY_ENCRYPTION_KEYS"]

    def use(*keys: str) -> None:
        app.config["PROVIDER_KEY_ENCRYPTION_KEYS"] = ",".join(keys)

    yield use
    app.config["PROVIDER_KEY_ENCRYPTION_KEYS"] = original


def test_round_trip_keeps_only_ciphertext_and_last4(db_session):
    config = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    assert config.api_key_last4 == KEYS[0][-4:]
    assert KEYS[0].encode() not in config.api_key_ciphertext
    assert decrypt_api_key(config) == KEYS[0]


def test_every_decrypt_is_audited_without_the_key(db_session):
    config = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    decrypt_api_key(config, purpose="fine_tuning")
    db_session.flush()
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_key.use")).one()
    assert (event.object_type, event.object_id, event.changes) == ("user_provider_configs", config.id, {"purpose": "fine_tuning"})


def test_ciphertext_copied_to_another_users_row_does_not_decrypt(db_session):
    provider = make_provider()
    mine = make_provider_config(make_user(), provider, api_key=KEYS[0])
    theirs = make_provider_config(make_user(), provider, api_key=KEYS[1])
    theirs.api_key_ciphertext = mine.api_key_ciphertext
    with pytest.raises(ApiKeyUnreadable, match="another account"):
        decrypt_api_key(theirs)


def test_ciphertext_copied_to_another_provider_of_the_same_user_does_not_decrypt(db_session):
    user = make_user()
    mine = make_provider_config(user, make_provider(), api_key=KEYS[0])
    other = make_provider_config(user, make_provider(), api_key=KEYS[1])
    other.api_key_ciphertext = mine.api_key_ciphertext
    with pytest.raises(ApiKeyUnreadable):
        decrypt_api_key(other)


def test_tampered_ciphertext_does_not_decrypt(db_session):
    config = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    config.api_key_ciphertext = config.api_key_ciphertext[:-2] + b"AA"
    with pytest.raises(ApiKeyUnreadable, match="cannot be decrypted"):
        decrypt_api_key(config)


def test_rotation_keeps_every_key_usable(db_session, encryption_keys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(old)
    provider = make_provider()
    configs = [make_provider_config(make_user(), provider, api_key=key) for key in KEYS[:2]]
    keyless = make_provider_config(make_user(), provider)  # never given a key: nothing to rotate
    configs.append(make_provider_config(make_user(), provider, api_key=KEYS[2]))
    encryption_keys(new, old)
    assert not any(is_under_newest_key(c.api_key_ciphertext) for c in configs)
    assert [decrypt_api_key(c) for c in configs] == KEYS, "old ciphertexts stay readable before rotation"

    summary = rotate_encryption(batch_size=2)
    db_session.expire_all()
    assert summary.rotated == 3 and summary.behind == [] and keyless.api_key_ciphertext is None
    encryption_keys(new)
    assert [decrypt_api_key(c) for c in configs] == KEYS, "usable with the new key alone"


def test_rotation_reports_keys_it_cannot_read(db_session, encryption_keys):
    lost, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(lost)
    config = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    encryption_keys(new)
    summary = rotate_encryption()
    assert summary.rotated == 0 and summary.behind == [config.id]


def test_rotate_keys_command(app, db_session, encryption_keys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(old)
    config = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    encryption_keys(new, old)
    result = app.test_cli_runner().invoke(rotate_keys_command, ["--batch", "10"])
    assert result.exit_code == 0, result.output
    assert "older keys may now be removed" in result.output
    db_session.expire_all()
    assert is_under_newest_key(config.api_key_ciphertext)
    assert db_session.scalars(select(AuditEvent.changes).where(AuditEvent.action == "provider_keys.rotate")).one()["behind"] == 0
