"""The account page: change password, see and revoke one's own sessions."""
import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.factories import PASSWORD, make_user
from webapp.accounts.models import UserSession
from webapp.accounts.passwords import verify_password
from webapp.accounts.sessions import start_session

NEW_PASSWORD = "another fine passphrase"


def active_session_ids(db_session, user) -> set[int]:
    db_session.expire_all()
    return set(db_session.scalars(
        select(UserSession.id).where(UserSession.user_id == user.id, UserSession.is_active)))


def test_account_page_lists_own_sessions_only(client, db_session):
    user, other = make_user(), make_user()
    start_session(other, "203.0.113.9", "Other's browser")
    start_session(user, "198.51.100.7", "Firefox on a laptop")
    db_session.commit()
    login(client, user)
    page = client.get("/account").data.decode()
    assert "198.51.100.7" in page and "Firefox on a laptop" in page and "this device" in page
    assert "203.0.113.9" not in page


def test_change_password_needs_the_current_one_and_signs_out_other_sessions(client, db_session, mailbox):
    user = make_user()
    start_session(user, "198.51.100.7", "Elsewhere")
    db_session.commit()
    login(client, user)
    wrong = client.post("/account/password", data={
        "current_password": "not it at all", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
    }, headers={"HX-Request": "true"})
    assert wrong.status_code == 422 and b"not your current password" in wrong.data
    db_session.expire_all()
    assert verify_password(user.password_hash, PASSWORD)

    ok = client.post("/account/password", data={
        "current_password": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
    }, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and b"password is changed" in ok.data
    assert b"<html" not in ok.data, "an HTMX request gets the fragment"
    db_session.expire_all()
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert len(active_session_ids(db_session, user)) == 1, "only this browser stays signed in"
    assert client.get("/account").status_code == 200
    assert mailbox[-1]["To"] == user.email and "changed" in mailbox[-1]["Subject"]


def test_change_password_enforces_the_policy(client, db_session):
    user = make_user()
    login(client, user)
    response = client.post("/account/password", data={
        "current_password": PASSWORD, "password": "short", "confirm": "short",
    })
    assert response.status_code == 422 and b"at least" in response.data


def test_revoke_one_own_session(client, db_session):
    user = make_user()
    start_session(user, "198.51.100.7", "Elsewhere")
    db_session.commit()
    login(client, user)
    elsewhere = db_session.scalar(select(UserSession).where(UserSession.user_agent == "Elsewhere"))
    response = client.post(f"/account/sessions/{elsewhere.id}/revoke", headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"signed out" in response.data
    assert elsewhere.id not in active_session_ids(db_session, user)
    assert client.get("/account").status_code == 200


@pytest.mark.parametrize("route", ["/account/sessions/{id}/revoke"])
def test_another_users_session_is_not_found(client, db_session, route):
    user, other = make_user(), make_user()
    start_session(other, "203.0.113.9", "Other's browser")
    db_session.commit()
    theirs = db_session.scalar(select(UserSession.id).where(UserSession.user_id == other.id))
    login(client, user)
    assert client.post(route.format(id=theirs)).status_code == 404
    assert theirs in active_session_ids(db_session, other)


def test_revoke_all_other_sessions_keeps_this_one(client, db_session):
    user = make_user()
    for n in range(3):
        start_session(user, f"198.51.100.{n}", "Elsewhere")
    db_session.commit()
    login(client, user)
    response = client.post("/account/sessions/revoke-others", follow_redirects=True)
    assert b"Signed out 3 other sessions" in response.data
    assert len(active_session_ids(db_session, user)) == 1
