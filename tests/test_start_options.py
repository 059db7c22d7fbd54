"""``minion-console``: its help, BASE_URL following --host/--port, and mail a newcomer can see."""
import logging

import pytest

from webapp import start
from webapp.mail import send_mail
from webapp.system.models import OutboxMessage
from webapp.extensions import db


def test_help_describes_each_option_without_raw_backticks(capsys):
    with pytest.raises(SystemExit):
        start.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "`" not in text
    assert "--port PORT" in text and "port to listen on" in text and "address to listen on" in text
    assert "/admin/mail_outbox/" in text


def test_base_url_follows_host_and_port_unless_set(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.delenv("BASE_URL", raising=False)
    monkeypatch.setenv("EMBEDDED_WORKER", "0")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/start.sqlite3")
    monkeypatch.setattr(start, "prepare", lambda app: seen.setdefault("app", app) and "pw")
    monkeypatch.setattr(start, "run_simple", lambda host, port, app, **kw: seen.update(host=host, port=port))
    start.main(["--port", "5101"])
    assert seen["app"].config["BASE_URL"] == "http://127.0.0.1:5101"
    assert seen["port"] == 5101
    assert start.base_url_for("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert start.base_url_for("::1", 8000) == "http://[::1]:8000"


def test_the_outbox_backend_keeps_and_prints_mail_whatever_logging_says(app, db_session, capsys):
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # as the migrations' logging configuration leaves it
    app.config["MAIL_BACKEND"] = "outbox"
    try:
        # Outside a request (as in a worker) the mail is delivered at once.
        send_mail("someone@example.test", "Hello there", "password_changed",
                  user=type("U", (), {"display_name": "Someone", "email": "someone@example.test"})(),
                  reset_link="http://console.test/x")
    finally:
        app.config["MAIL_BACKEND"] = "memory"
        root.setLevel(level)
    printed = capsys.readouterr().out
    assert "Mail to someone@example.test: Hello there" in printed and "http://console.test/x" in printed
    kept = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.recipient == "someone@example.test")).one()
    assert kept.subject == "Hello there" and "http://console.test/x" in kept.body
