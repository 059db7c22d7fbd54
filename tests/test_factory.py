import os
import subprocess
import sys


def test_create_app_starts_with_no_environment(tmp_path):
    """create_app() works with nothing configured: SQLite in the instance folder, a generated key."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "INSTANCE_PATH": str(tmp_path / "inst")}
    code = (
        "from webapp import create_app; app = create_app();"
        "print(app.config['SQLALCHEMY_DATABASE_URI']); print(len(app.config['SECRET_KEY']))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    uri, key_length = out.stdout.split()
    assert uri.startswith("sqlite:///") and uri.endswith("minion-console.sqlite3")
    assert int(key_length) >= 32
    secret_file = tmp_path / "inst" / "secret_key"
    assert secret_file.exists() and oct(secret_file.stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert again.stdout == out.stdout, "the secret key is generated once and kept"


def test_postgresql_urls_use_psycopg3():
    from webapp.config import database_url

    assert database_url("postgresql://u@h/d", "/x") == "postgresql+psycopg://u@h/d"
    assert database_url("postgres://u@h/d", "/x") == "postgresql+psycopg://u@h/d"


def test_passwords_are_hashed_with_rfc_9106_low_memory_by_default(tmp_path):
    """Production's argon2 parameters (the test apps set a cheaper profile, so only this checks them)."""
    from flask import Flask

    from webapp.accounts.passwords import hash_password, needs_rehash
    from webapp.config import from_environment

    app = Flask(__name__)
    app.config["PASSWORD_HASH_PROFILE"] = from_environment(str(tmp_path))["PASSWORD_HASH_PROFILE"]
    with app.app_context():
        hashed = hash_password("a password")
        assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert not needs_rehash(hashed)
