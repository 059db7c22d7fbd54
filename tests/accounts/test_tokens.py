"""Password reset and email verification: mail links from BASE_URL, expiry, single use, session revocation."""
from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.accounts.conftest import link_in, path_of, without_csrf
from tests.conftest import login
from tests.factories import PASSWORD, make_user
from webapp.accounts.models import AuditEvent, Token, UserSession
from webapp.accounts.passwords import verify_password
from webapp.accounts.services import reset_password, send_password_reset
from webapp.accounts.tokens import EMAIL_VERIFICATION, PASSWORD_RESET, issue_token, usable_token
from webapp.db import utcnow
from webapp.security import hash_token

NEW_PASSWORD = "a brand new passphrase"


def reset_link_for(user, mailbox) -> str:
    mailbox.clear()
    send_password_reset(user)
    (message,) = mailbox
    assert (message["To"], message["Subject"]) == (user.email, "Reset your Minion Console password")
    return path_of(link_in(message))


def test_reset_request_looks_the_same_for_known_and_unknown_emails(client, db_session, mailbox):
    user = make_user()
    known = client.post("/password/forgot", data={"email": user.email.upper()}, follow_redirects=True)
    unknown = client.post("/password/forgot", data={"email": "nobody@example.test"}, follow_redirects=True)
    assert known.status_code == unknown.status_code == 200
    # The CSRF token carries a timestamp, so two requests a second apart differ there only.
    assert without_csrf(known.data) == without_csrf(unknown.data)
    assert [m["To"] for m in mailbox] == [user.email], "only the registered address gets mail"


def test_reset_request_does_the_same_work_for_known_and_unknown_emails_and_mails_after_the_response(
        app, db_session, mailbox, count_queries):
    user = make_user()
    server = FlaskClient(app)  # leaves closing the response to the test, as a server would after sending it
    request_queries, responses = {}, {}
    for case, email in (("known", user.email), ("unknown", "nobody-here@example.test")):
        sent = len(mailbox)
        with count_queries() as counter:
            responses[case] = server.post("/password/forgot", data={"email": email},
                                          environ_base={"REMOTE_ADDR": "198.51.100.77"})
        request_queries[case] = counter.statements
        assert len(mailbox) == sent, "nothing is sent while the response is on its way"
        responses[case].close()  # what the server does once the response is sent
    assert request_queries["known"] == request_queries["unknown"]
    assert responses["known"].headers["Location"] == responses["unknown"].headers["Location"]
    assert [m["To"] for m in mailbox] == [user.email]
    issued = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "password_reset.issue",
                                                         AuditEvent.object_id == user.id)).one()
    assert issued.ip_address == "198.51.100.77", "the work after the response still records who asked"


def test_work_after_the_response_runs_once_its_body_is_written_without_waiting_for_close(app, db_session, mailbox):
    """werkzeug's server may wait on the client's socket before it closes a response: the mail must not wait too."""
    user = make_user()
    server = FlaskClient(app)
    response = server.post("/password/forgot", data={"email": user.email})
    assert mailbox == []
    response.get_data()  # the server hands the last byte on
    assert [m["To"] for m in mailbox] == [user.email]
    response.close()
    assert len(mailbox) == 1, "run once, not again on close"


def test_a_failing_mail_server_does_not_fail_the_request(app, client, db_session, mailbox, monkeypatch, caplog):
    from webapp import mail

    def smtp_down(message):
        raise ConnectionRefusedError("SMTP server down")

    monkeypatch.setitem(app.config, "MAIL_BACKEND", "smtp")
    monkeypatch.setattr(mail, "send_smtp", smtp_down)
    response = client.post("/password/forgot", data={"email": make_user().email})
    assert response.status_code == 302 and "work after the response failed" in caplog.text


def test_reset_link_comes_from_base_url_never_the_host_header(client, db_session, mailbox):
    user = make_user()
    client.post("/password/forgot", data={"email": user.email}, headers={"Host": "127.0.0.1"})
    link = link_in(mailbox[0])
    assert link.startswith("http://console.test/password/reset/")
    token = link.rsplit("/", 1)[1]
    stored = db_session.scalar(select(Token).where(Token.user_id == user.id))
    assert stored.token_hash == hash_token(token) and token not in stored.token_hash
    assert stored.type == PASSWORD_RESET and stored.issued_by_id is None


def test_reset_sets_password_spends_token_and_revokes_every_session(client, db_session, mailbox):
    user = make_user()
    signed_in_elsewhere = client.application.test_client()
    login(signed_in_elsewhere, user)
    first_link = reset_link_for(user, mailbox)
    link = reset_link_for(user, mailbox)

    assert client.get(link).status_code == 200
    response = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    db_session.expire_all()

    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert db_session.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.is_active)) == 0
    assert signed_in_elsewhere.get("/").status_code == 302, "the other browser is signed out"
    tokens = db_session.scalars(select(Token).where(Token.user_id == user.id)).all()
    assert sum(t.used_at is not None for t in tokens) == 1
    assert all(t.used_at or t.expires_at <= utcnow() for t in tokens), "other reset links are invalidated"
    assert client.get(link).status_code == 410, "single use"
    assert client.get(first_link).status_code == 410
    (changed,) = [m for m in mailbox if "changed" in m["Subject"]]
    assert changed["To"] == user.email
    assert login(client, user, password=NEW_PASSWORD).status_code == 302
    assert db_session.scalar(select(AuditEvent).where(
        AuditEvent.action == "password.reset", AuditEvent.object_id == user.id)).actor_id == user.id


def test_expired_reset_token_is_refused(client, db_session, mailbox):
    user = make_user()
    link = reset_link_for(user, mailbox)
    db_session.scalar(select(Token).where(Token.user_id == user.id)).expires_at = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert client.get(link).status_code == 410
    assert client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 410
    db_session.expire_all()
    assert verify_password(user.password_hash, PASSWORD)


def test_reset_token_is_single_use_in_the_service_too(db_session, mailbox):
    user = make_user()
    raw = issue_token(user, PASSWORD_RESET)
    assert reset_password(raw, NEW_PASSWORD) is user
    assert reset_password(raw, "yet another passphrase") is None
    assert verify_password(user.password_hash, NEW_PASSWORD)


def test_reset_form_enforces_the_password_policy(client, db_session, mailbox):
    user = make_user()
    link = reset_link_for(user, mailbox)
    for weak in ("short", "password123", "aaaaaaaaaaaa"):
        response = client.post(link, data={"password": weak, "confirm": weak})
        assert response.status_code == 422
    mismatch = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"})
    assert mismatch.status_code == 422 and b"differ" in mismatch.data
    assert usable_token(link.rsplit("/", 1)[1], PASSWORD_RESET) is not None, "a refused form spends nothing"


def test_verification_token_cannot_reset_a_password(client, db_session):
    user = make_user()
    raw = issue_token(user, EMAIL_VERIFICATION)
    db_session.commit()
    assert client.get(f"/password/reset/{raw}").status_code == 410


def test_email_verification_from_the_mailed_link_and_resend(client, db_session, mailbox):
    user = make_user(email_verified_at=None)
    login(client, user)
    page = client.get("/account").data.decode()
    assert "not confirmed" in page
    client.post("/account/verification")
    (message,) = mailbox
    assert (message["To"], message["Subject"]) == (user.email, "Confirm your email address")
    link = path_of(link_in(message))
    assert link.startswith("/verify-email/")

    assert b"Confirm my address" in client.get(link).data, "opening the link spends nothing"
    response = client.post(link)
    assert response.status_code == 302
    db_session.expire_all()
    assert user.email_verified_at is not None
    assert client.post(link).status_code == 410, "single use"
    assert db_session.scalar(select(AuditEvent).where(
        AuditEvent.action == "email.verify", AuditEvent.object_id == user.id)) is not None

    mailbox.clear()
    client.post("/account/verification")
    assert mailbox == [], "an address already confirmed gets no new link"


def test_expired_verification_token_is_refused(client, db_session):
    user = make_user(email_verified_at=None)
    raw = issue_token(user, EMAIL_VERIFICATION)
    db_session.flush()
    db_session.scalar(select(Token).where(Token.user_id == user.id)).expires_at = utcnow() - timedelta(minutes=1)
    db_session.commit()
    assert client.post(f"/verify-email/{raw}").status_code == 410
    db_session.expire_all()
    assert user.email_verified_at is None
