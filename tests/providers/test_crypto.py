import contextlib

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.factories import make_provider, make_provider_config, make_user
from webapp.accounts.models import AuditEvent
from webapp.providers.cli import rotate_keys_command
from webapp.extensions import db
from webapp.providers.crypto import ApiKeyUnreadable, decrypt_api_key, encrypt_api_key, is_under_newest_key
from webapp.providers.models import UserProviderConfig
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


def sealed_under_an_older_key(encryption_keys, keys=KEYS) -> list[UserProviderConfig]:
    """One config per key, sealed under a key that is then the older of the two configured."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(old)
    provider = make_provider()
    configs = [make_provider_config(make_user(), provider, api_key=key) for key in keys]
    encryption_keys(new, old)
    return configs


@contextlib.contextmanager
def before_each_statement(app, react):
    """Meanwhile ``react(connection, statement)`` runs before every SQL statement: another request's work, or an outage."""
    def hook(conn, cursor, statement, parameters, context, executemany) -> None:
        react(conn, statement)

    connection = db._app_engines[app][None]
    sa.event.listen(connection, "before_cursor_execute", hook)
    try:
        yield
    finally:
        sa.event.remove(connection, "before_cursor_execute", hook)


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


def test_rotation_reports_keys_it_cannot_read_and_rotates_the_rest(db_session, encryption_keys):
    lost = Fernet.generate_key().decode()
    encryption_keys(lost)
    unreadable = make_provider_config(make_user(), make_provider(), api_key=KEYS[0])
    (readable,) = sealed_under_an_older_key(encryption_keys, KEYS[1:2])
    summary = rotate_encryption()
    db_session.expire_all()
    assert summary.rotated == 1 and summary.behind == [unreadable.id]
    assert is_under_newest_key(readable.api_key_ciphertext)
    audit = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "provider_keys.rotate")).one()
    assert (audit.object_type, audit.object_id, audit.changes) == ("user_provider_configs", None,
                                                                   {"rotated": 1, "behind": 1})


def test_each_row_is_rotated_on_its_own_even_when_its_ciphertext_was_copied_to_another(db_session, encryption_keys):
    mine, theirs = sealed_under_an_older_key(encryption_keys, KEYS[:2])
    theirs.api_key_ciphertext = mine.api_key_ciphertext
    db_session.flush()
    assert rotate_encryption().rotated == 2
    db_session.expire_all()
    assert mine.api_key_ciphertext != theirs.api_key_ciphertext, "rotating one row wrote the other too"
    assert decrypt_api_key(mine) == KEYS[0]


def test_a_key_replaced_while_the_rotation_runs_is_not_overwritten(app, db_session, encryption_keys):
    first, second = sealed_under_an_older_key(encryption_keys, KEYS[:2])
    replacement = UserProviderConfig(user_id=second.user_id, provider_id=second.provider_id)
    encrypt_api_key(replacement, KEYS[2])
    table, replaced = UserProviderConfig.__table__, []

    def replace_second_key(conn, statement) -> None:  # its owner saves a new key as the first row is rotated
        if statement.startswith("UPDATE user_provider_configs") and not replaced:
            replaced.append(True)
            conn.execute(sa.update(table).where(table.c.id == second.id)
                         .values(api_key_ciphertext=replacement.api_key_ciphertext))

    with before_each_statement(app, replace_second_key):
        summary = rotate_encryption()
    db_session.expire_all()
    assert replaced and summary.rotated == 1
    assert [decrypt_api_key(first), decrypt_api_key(second)] == [KEYS[0], KEYS[2]]


def test_a_rotation_cut_off_part_way_keeps_the_batches_it_committed(app, db_session, encryption_keys):
    configs = sealed_under_an_older_key(encryption_keys, [*KEYS, "sk-test-rotation-03-abcdefghijkl"])
    batch_reads = []

    def fail_at_the_second_batch(conn, statement) -> None:
        if statement.startswith("SELECT user_provider_configs.id"):
            batch_reads.append(True)
            if len(batch_reads) == 2:
                raise OperationalError(statement, {}, Exception("the database went away"))

    with before_each_statement(app, fail_at_the_second_batch), pytest.raises(OperationalError):
        rotate_encryption(batch_size=2)
    db_session.rollback()
    assert [is_under_newest_key(c.api_key_ciphertext) for c in configs] == [True, True, False, False]
    assert rotate_encryption(batch_size=2).behind == [], "run again, it finishes the rest"
    db_session.expire_all()
    assert all(is_under_newest_key(c.api_key_ciphertext) for c in configs)


def test_rotation_reaches_every_row_whatever_order_the_database_stores_them_in(db_session, encryption_keys):
    # Stored highest id first: read without its ORDER BY, PostgreSQL returns a batch in storage order,
    # and paging on the batch's last id would then skip the lowest row.
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    encryption_keys(old)
    provider = make_provider()
    for offset, key in enumerate([*KEYS, "sk-test-rotation-03-abcdefghijkl"]):
        make_provider_config(make_user(), provider, api_key=key, id=10**9 - offset)
    encryption_keys(new, old)
    assert rotate_encryption(batch_size=2).behind == []


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
