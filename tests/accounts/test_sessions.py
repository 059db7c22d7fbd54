from sqlalchemy import select

from tests.conftest import login
from tests.factories import make_user
from webapp.accounts.models import User, UserSession
from webapp.accounts.sessions import SignedInUser, end_user_sessions, resume_session


def test_sign_in_creates_a_server_side_session_holding_only_a_hash(client, db_session):
    user = make_user()
    response = login(client, user)
    assert response.status_code == 302
    row = db_session.scalar(select(UserSession).where(UserSession.user_id == user.id))
    assert row.is_active and len(row.session_token_hash) == 64
    cookie = client.get_cookie("session").value
    assert row.session_token_hash not in cookie
    assert client.get("/").status_code == 200


def test_revoked_session_is_signed_out_on_its_next_request(client, db_session):
    user = make_user()
    login(client, user)
    assert client.get("/").status_code == 200
    end_user_sessions(user, revoked_by=None)
    db_session.commit()
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_sign_out_is_post_only_and_revokes(client, db_session):
    user = make_user()
    login(client, user)
    assert client.get("/logout").status_code == 405
    client.post("/logout")
    assert db_session.scalar(select(UserSession.is_active).where(UserSession.user_id == user.id)) is False
    assert client.get("/").status_code == 302


def test_remember_cookie_carries_the_revocable_token(client, db_session):
    user = make_user()
    login(client, user, remember=True)
    remember = client.get_cookie("remember_token")
    assert remember is not None and str(user.id) != remember.value.split("|")[0]
    client.delete_cookie("session")
    assert client.get("/").status_code == 200, "remember me restores the session"
    end_user_sessions(user, revoked_by=None)
    db_session.commit()
    client.delete_cookie("session")
    assert client.get("/").status_code == 302, "revoking the session ends remember me"


def test_the_signed_in_user_is_one_query_and_not_an_orm_object(app, client, db_session, count_queries):
    user = make_user(role="support")
    login(client, user)
    with client.session_transaction() as session:
        token = session["_user_id"]
    with app.test_request_context(), count_queries() as counter:
        signed_in = resume_session(token)
    assert counter.count == 1
    assert isinstance(signed_in, SignedInUser) and not isinstance(signed_in, User)
    assert (signed_in.id, signed_in.email, signed_in.get_id()) == (user.id, user.email, token)
    assert signed_in.permission_codes() == user.permission_codes() and signed_in.has_permission("users.read")
    assert signed_in.record() is db_session.get(User, user.id)
