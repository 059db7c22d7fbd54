"""Sign-in hardening: lockout, rate limits, no enumeration, outages, CSRF, headers, hosts."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.conftest import attempt_login, login
from tests.factories import PASSWORD, make_user
from webapp.accounts import sessions
from webapp.accounts.models import UserSession
from webapp.accounts.services import authenticate
from webapp.db import utcnow

CSRF_VALUE = re.compile(r'(name="csrf_token" value="|"X-CSRFToken": ")[^"]+')


def without_csrf(html: bytes) -> str:
    """A page with its per-request CSRF values blanked, so two pages compare equal."""
    return CSRF_VALUE.sub(r"\1", html.decode())


def test_account_locks_after_repeated_failures_then_unlocks_after_the_period(app, client, db_session):
    user = make_user()
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        attempt_login(client, user, password="wrong password!")
    db_session.expire_all()
    assert user.locked_until is not None and user.locked_until > utcnow()
    assert attempt_login(client, user).status_code == 200, "the right password does not open a locked account"

    user.locked_until = utcnow() - timedelta(seconds=1)
    db_session.commit()
    assert login(client, user).status_code == 302


def test_lockout_threshold_and_period_are_configurable(app, db_session):
    user = make_user()
    app.config.update(LOCKOUT_THRESHOLD=2, LOCKOUT_MINUTES=1)
    try:
        assert authenticate(user.email, "nope nope nope") is None
        assert user.locked_until is None
        authenticate(user.email, "nope nope nope")
        assert utcnow() + timedelta(seconds=50) < user.locked_until <= utcnow() + timedelta(minutes=1)
    finally:
        app.config.update(LOCKOUT_THRESHOLD=5, LOCKOUT_MINUTES=15)


def test_sign_in_is_rate_limited_per_ip(limited_client):
    statuses = [attempt_login(limited_client, "nobody@example.test", "whatever-password").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    other_ip = limited_client.post("/login", data={"email": "x@example.test", "password": "y"},
                                   environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert other_ip.status_code == 200, "another address has its own allowance"
    assert limited_client.get("/login").status_code == 200, "only POSTs count"


def test_password_reset_request_is_rate_limited_per_ip(limited_client):
    statuses = [limited_client.post("/password/forgot", data={"email": "a@example.test"}).status_code
                for _ in range(4)]
    assert statuses == [302, 302, 302, 429]


@pytest.mark.parametrize("case", ["wrong password", "locked", "deactivated"])
def test_failed_sign_in_looks_the_same_for_known_and_unknown_emails(client, db_session, case):
    known = make_user(
        is_active=case != "deactivated",
        locked_until=utcnow() + timedelta(minutes=5) if case == "locked" else None,
    )
    password = "wrong password!" if case == "wrong password" else PASSWORD
    known_response = attempt_login(client, known, password=password)
    unknown_response = attempt_login(client, "nobody-here@example.test", password=password)
    assert known_response.status_code == unknown_response.status_code == 200
    known_page = without_csrf(known_response.data).replace(known.email, "EMAIL")
    unknown_page = without_csrf(unknown_response.data).replace("nobody-here@example.test", "EMAIL")
    assert known_page == unknown_page


def test_sign_in_issues_a_new_session_token_each_time(client, db_session):
    user = make_user()
    login(client, user)
    first = client.get_cookie("session").value
    client.post("/logout")
    login(client, user)
    hashes = db_session.scalars(select(UserSession.session_token_hash).where(UserSession.user_id == user.id)).all()
    assert len(set(hashes)) == 2 and client.get_cookie("session").value != first


def test_sign_in_rehashes_a_password_hashed_with_old_parameters(client, db_session):
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    user = make_user(password_hash=weak)
    assert login(client, user).status_code == 302
    db_session.expire_all()
    assert user.password_hash != weak and "m=65536" in user.password_hash


def test_next_parameter_only_follows_same_site_paths(client, db_session):
    user = make_user()
    response = client.post("/login?next=//evil.test/x", data={"email": user.email, "password": PASSWORD})
    assert response.headers["Location"] == "/"


def test_database_outage_in_the_user_loader_is_a_503_not_a_sign_out(client, db_session, monkeypatch):
    user = make_user()
    login(client, user)

    def unreachable(token):
        raise OperationalError("SELECT sessions", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(sessions, "active_session_row", unreachable)
    response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert b"cannot be reached" in response.data
    monkeypatch.undo()
    assert client.get("/").status_code == 200, "the session survived the outage"


def test_htmx_request_needing_sign_in_gets_hx_redirect(client, db_session):
    response = client.get("/account", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")


# --- CSRF ------------------------------------------------------------------------


def csrf_token_from(client) -> str:
    page = client.get("/account").data.decode()
    return re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)


def test_state_changing_request_without_csrf_token_is_refused(client, db_session, csrf_enabled):
    user = make_user()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").data.decode()).group(1)
    client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert client.post("/logout").status_code == 400
    assert client.post("/account/sessions/revoke-others", headers={"HX-Request": "true"}).status_code == 400
    assert client.get("/account").status_code == 200, "still signed in"

    htmx_ok = client.post("/account/sessions/revoke-others",
                          headers={"HX-Request": "true", "X-CSRFToken": csrf_token_from(client)})
    assert htmx_ok.status_code == 200, "the header HTMX sends is accepted"
    assert client.post("/logout", data={"csrf_token": csrf_token_from(client)}).status_code == 302


def test_csrf_token_lives_as_long_as_the_session(app):
    assert app.config["WTF_CSRF_TIME_LIMIT"] is None


# --- headers, cookies, hosts ---------------------------------------------------------


def test_every_response_carries_the_security_headers(client, db_session):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    script_src = next(part for part in csp.split("; ") if part.startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "https://cdn.jsdelivr.net" in script_src
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers
    assert 'integrity="sha384-' in response.data.decode() and '"allowEval": false' in response.data.decode()
    assert "max-age" in client.get("/login", base_url="https://localhost").headers["Strict-Transport-Security"]
    assert client.get("/no-such-page").headers["X-Content-Type-Options"] == "nosniff"


def test_cookies_are_httponly_lax_and_secure_when_configured(app, client, db_session):
    user = make_user()
    login(client, user, remember=True)
    cookies = {c.key: c for c in client._cookies.values()}
    for name in ("session", "remember_token"):
        assert cookies[name].http_only and cookies[name].same_site == "Lax"
    assert app.config["SESSION_COOKIE_SECURE"] is False
    app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    try:
        response = login(app.test_client(), user, remember=True)
        assert all("Secure" in c for c in response.headers.getlist("Set-Cookie"))
    finally:
        app.config.update(SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False)


def test_requests_for_untrusted_hosts_are_refused(client, db_session):
    assert client.get("/login", headers={"Host": "attacker.test"}).status_code == 400
    assert client.get("/login", headers={"Host": "localhost"}).status_code == 200
