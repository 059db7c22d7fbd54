"""Sign-in hardening: lockout, rate limits, no enumeration, outages, CSRF, headers, hosts."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.accounts.conftest import without_csrf
from tests.conftest import attempt_login, login
from tests.factories import PASSWORD, make_user
from webapp.accounts import sessions
from webapp.accounts.models import UserSession
from webapp.accounts import throttle
from webapp.accounts.services import authenticate, reset_password
from webapp.accounts.tokens import PASSWORD_RESET, issue_token
from webapp.db import utcnow
from webapp.security import HTMX_CDN_URL

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.20"


def sign_in_from(client, user, address: str, password: str = PASSWORD):
    return client.post("/login", data={"email": user.email, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def test_someone_elses_wrong_passwords_do_not_keep_the_owner_out(app, client, db_session):
    user = make_user(role="admin")
    for _ in range(app.config["LOCKOUT_THRESHOLD"] + 5):
        assert sign_in_from(client, user, ATTACKER, "wrong password!").status_code == 200
    assert sign_in_from(client, user, ATTACKER).status_code == 200, "the guessing address waits, even if right"
    assert sign_in_from(client, user, OWNER).status_code == 302, "the owner, elsewhere, is let in at once"
    db_session.expire_all()
    assert user.locked_until is None and user.failed_login_count == 0, "a successful sign-in resets the count"


def test_each_failure_beyond_the_threshold_doubles_the_wait_up_to_lockout_minutes(app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "LOCKOUT_THRESHOLD", 3)
    monkeypatch.setitem(app.config, "LOCKOUT_MINUTES", 1)
    user = make_user()
    waits = [throttle.record_failure(user.email, ATTACKER, user) for _ in range(11)]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert 50 < throttle.seconds_to_wait(user.email, ATTACKER, user) <= 60
    assert throttle.seconds_to_wait(user.email, OWNER, user) == 0
    assert authenticate(user.email, PASSWORD, ATTACKER) is None, "not even checked while waiting"
    assert authenticate(user.email, PASSWORD, OWNER) == user


def test_unknown_emails_are_throttled_the_same_way(app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "LOCKOUT_THRESHOLD", 2)
    known = make_user()
    for email, user in ((known.email, known), ("nobody-at-all@example.test", None)):
        assert [throttle.record_failure(email, ATTACKER, user) for _ in range(4)] == [0, 0, 1, 2]
    stranger = "someone-else@example.test"
    for _ in range(3):
        assert authenticate(stranger, "a guess", ATTACKER) is None
    assert throttle.seconds_to_wait(stranger, ATTACKER, None) > 0, "the guessing address waits"
    assert throttle.seconds_to_wait(stranger, OWNER, None) == 0, "another address does not"


def test_a_password_reset_lifts_every_wait_of_the_account(app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "LOCKOUT_THRESHOLD", 1)
    user = make_user()
    for _ in range(3):
        throttle.record_failure(user.email, ATTACKER, user)
    assert throttle.seconds_to_wait(user.email, ATTACKER, user) > 0
    raw = issue_token(user, PASSWORD_RESET)
    reset_password(raw, "a brand new password")
    assert throttle.seconds_to_wait(user.email, ATTACKER, user) == 0
    assert authenticate(user.email, "a brand new password", ATTACKER) == user


def test_a_successful_sign_in_clears_the_addresses_count(app, client, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "LOCKOUT_THRESHOLD", 3)
    user = make_user()
    for _ in range(2):
        sign_in_from(client, user, ATTACKER, "wrong password!")
    db_session.expire_all()
    assert user.failed_login_count == 2
    assert sign_in_from(client, user, ATTACKER).status_code == 302
    db_session.expire_all()
    assert user.failed_login_count == 0
    assert [throttle.record_failure(user.email, ATTACKER, user) for _ in range(4)] == [0, 0, 0, 1]


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


def test_sign_in_rehashes_a_password_hashed_with_old_parameters(app, client, db_session, monkeypatch):
    from argon2 import PasswordHasher

    from webapp import config

    monkeypatch.setitem(app.config, "PASSWORD_HASH_PROFILE", config.PASSWORD_HASH_PROFILE)  # production's
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

    def unreachable():
        raise OperationalError("SELECT sessions", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(sessions, "signed_in_statement", unreachable)
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
    assert "'unsafe-inline'" not in script_src
    assert HTMX_CDN_URL in script_src.split() and "https://cdn.jsdelivr.net" not in script_src.split(), \
        "the pinned htmx file, not the whole CDN host"
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


def test_pages_and_exports_are_never_stored_but_static_files_keep_their_caching(client, db_session):
    login(client, make_user(role="admin"))
    for url, headers in (("/", {}), ("/account", {}), ("/account/subscription", {"HX-Request": "true"}),
                         ("/admin/users/export/csv/", {})):
        response = client.get(url, headers=headers)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store", url
    static = client.get("/static/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
