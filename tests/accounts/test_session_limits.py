"""A session ends on its own: past its idle timeout, past its absolute lifetime, or when its user is
deactivated; each is checked by using the session (and its remember-me cookie) on the next request."""
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from tests.conftest import login
from tests.factories import make_user
from webapp.accounts.models import UserSession
from webapp.db import utcnow

IDLE_MINUTES, LIFETIME_HOURS = 30, 2


@pytest.fixture
def short_limits(app):
    saved = {key: app.config[key] for key in ("SESSION_IDLE_TIMEOUT_MINUTES", "SESSION_ABSOLUTE_LIFETIME_HOURS")}
    app.config.update(SESSION_IDLE_TIMEOUT_MINUTES=IDLE_MINUTES, SESSION_ABSOLUTE_LIFETIME_HOURS=LIFETIME_HOURS)
    yield
    app.config.update(saved)


def signed_in(client, db_session, remember: bool):
    """A user signed in on ``client``, and their session row; with ``remember`` only the remember-me cookie is kept."""
    user = make_user()
    login(client, user, remember=remember)
    if remember:
        client.delete_cookie("session")
    assert client.get("/").status_code == 200
    row = db_session.scalars(select(UserSession).where(UserSession.user_id == user.id)).one()
    return user, row


def age_session(db_session, row: UserSession, **values) -> None:
    db_session.execute(update(UserSession).where(UserSession.id == row.id).values(**values))
    db_session.commit()


def set_active(db_session, user, active: bool) -> None:
    db_session.refresh(user)
    user.is_active = active
    db_session.commit()


def assert_refused(client, db_session, row: UserSession) -> None:
    response = client.get("/account")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    db_session.expire_all()
    assert db_session.scalar(select(UserSession.is_active).where(UserSession.id == row.id)) is False, \
        "the refused session is ended for good"


def test_new_session_expires_after_the_configured_lifetime(client, db_session, short_limits):
    before = utcnow()
    _user, row = signed_in(client, db_session, remember=False)
    assert before + timedelta(hours=LIFETIME_HOURS) <= row.expires_at <= utcnow() + timedelta(hours=LIFETIME_HOURS)


@pytest.mark.parametrize("remember", [False, True], ids=["session cookie", "remember-me cookie"])
def test_session_idle_past_the_timeout_is_refused(client, db_session, short_limits, remember):
    _user, row = signed_in(client, db_session, remember)
    age_session(db_session, row, last_seen_at=utcnow() - timedelta(minutes=IDLE_MINUTES, seconds=1))
    assert_refused(client, db_session, row)


@pytest.mark.parametrize("remember", [False, True], ids=["session cookie", "remember-me cookie"])
def test_session_past_its_absolute_lifetime_is_refused_even_when_in_use(client, db_session, short_limits, remember):
    _user, row = signed_in(client, db_session, remember)
    age_session(db_session, row, expires_at=utcnow() - timedelta(seconds=1))
    assert_refused(client, db_session, row)


def test_session_inside_both_limits_is_kept_and_its_last_use_recorded(client, db_session, short_limits):
    _user, row = signed_in(client, db_session, remember=False)
    idle_until_now = utcnow() - timedelta(minutes=IDLE_MINUTES - 1)
    age_session(db_session, row, last_seen_at=idle_until_now, expires_at=utcnow() + timedelta(minutes=1))
    assert client.get("/account").status_code == 200
    db_session.expire_all()
    assert row.is_active and row.last_seen_at > idle_until_now + timedelta(minutes=1), \
        "using the session moves its idle clock"
    assert client.get("/account").status_code == 200


@pytest.mark.parametrize("remember", [False, True], ids=["session cookie", "remember-me cookie"])
def test_deactivated_users_live_session_is_refused_at_once(client, db_session, remember):
    user, row = signed_in(client, db_session, remember)
    set_active(db_session, user, False)
    assert_refused(client, db_session, row)
    set_active(db_session, user, True)
    assert client.get("/account").status_code == 302, "reactivation does not bring the old session back"
