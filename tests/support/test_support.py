"""The support console: search, the user page, and audited, permission-checked actions."""
import pytest
from sqlalchemy import select

from tests.accounts.conftest import link_in
from tests.conftest import attempt_login, login
from tests.factories import PASSWORD, ensure_roles, make_user
from webapp.accounts.models import AuditEvent, Role, Token, UserSession
from webapp.accounts.passwords import verify_password
from webapp.accounts.services import STAFF_LOCK_UNTIL, is_staff_locked
from webapp.accounts.sessions import start_session
from webapp.accounts.tokens import EMAIL_VERIFICATION, PASSWORD_RESET, issue_token, usable_token


@pytest.fixture
def staff(client, db_session):
    support = make_user("support", display_name="Sam Support")
    login(client, support)
    return support


def test_search_by_email_or_name_live_and_paginated(client, db_session, staff):
    make_user(email="grace@hopper.test", display_name="Grace Hopper")
    make_user(email="g.h@navy.test", display_name="Amazing Grace")
    make_user(email="ada@lovelace.test", display_name="Ada Lovelace")

    page = client.get("/support/users?q=grace").data.decode()
    assert "grace@hopper.test" in page and "g.h@navy.test" in page and "ada@lovelace.test" not in page
    assert 'hx-trigger="input changed delay:300ms, search"' in page

    fragment = client.get("/support/users?q=LOVELACE", headers={"HX-Request": "true"}).data.decode()
    assert "ada@lovelace.test" in fragment and "<html" not in fragment and 'id="user-results"' in fragment

    first = client.get("/support/users?q=a&per_page=2").data.decode()
    assert 'rel="next"' in first and "page=2" in first
    assert "No user" in client.get("/support/users?q=zzz-nobody").data.decode()


def test_search_wildcards_are_literal(client, db_session, staff):
    make_user(email="percent@example.test", display_name="Percy Plain")
    make_user(email="sale@example.test", display_name="100% Sale")
    response = client.get("/support/users?q=%25")
    page = response.data.decode()
    assert response.status_code == 200 and "sale@example.test" in page, "a literal % is found"
    assert "percent@example.test" not in page, "and is not a wildcard"


def test_search_query_count_does_not_grow_with_rows(client, db_session, staff, count_queries):
    for _ in range(3):
        make_user(role="user")
    with count_queries() as few:
        client.get("/support/users?per_page=3")
    for _ in range(10):
        make_user(role="user")
    with count_queries() as many:
        client.get("/support/users?per_page=13")
    assert many.count == few.count


def test_user_page_shows_no_secrets(client, db_session, staff, mailbox):
    user = make_user()
    raw_session = start_session(user, "198.51.100.4", "Browser")
    raw_token = issue_token(user, PASSWORD_RESET, issued_by=staff)
    db_session.commit()
    page = client.get(f"/support/users/{user.id}").data.decode()
    assert user.email in page and "198.51.100.4" in page and "password reset" in page
    session_hash = db_session.scalar(select(UserSession.session_token_hash).where(UserSession.user_id == user.id))
    token_hash = db_session.scalar(select(Token.token_hash).where(Token.user_id == user.id))
    for secret in (user.password_hash, "argon2", raw_session, session_hash, raw_token, token_hash):
        assert secret not in page


def test_support_cannot_change_roles(app):
    role_routes = [r for r in app.url_map.iter_rules() if r.endpoint.startswith("support.") and "role" in r.rule]
    assert role_routes == []


ACTIONS = [
    ("password-reset", "password_reset.issue"),
    ("verification", "email_verification.issue"),
    ("tokens/expire", "tokens.expire"),
    ("sessions/revoke", "sessions.revoke_all"),
    ("lock", "account.lock"),
    ("unlock", "account.unlock"),
    ("sessions/{session_id}/revoke", "session.revoke"),
]


def expected_changes(action: str, staff, session_id: int) -> dict:
    """What each action's audit row must record, written out (the user starts with one session and one reset link)."""
    return {
        "password_reset.issue": {"issued_by": staff.email},
        "email_verification.issue": {"issued_by": staff.email},
        "tokens.expire": {"tokens_expired": 1},
        "sessions.revoke_all": {"sessions_revoked": 1, "kept_session_id": None},
        "account.lock": {"locked_until": [None, "until unlocked"], "sessions_revoked": 1},
        "account.unlock": {"locked_until": [ANY_LOCK_END, None]},
        "session.revoke": {"session_id": session_id},
    }[action]


ANY_LOCK_END = STAFF_LOCK_UNTIL.strftime("%Y-%m-%d")


@pytest.mark.parametrize(("path", "action"), ACTIONS)
def test_every_support_action_writes_one_audit_row(client, db_session, staff, mailbox, path, action):
    user = make_user(email_verified_at=None, locked_until=STAFF_LOCK_UNTIL if action == "account.unlock" else None)
    start_session(user, "198.51.100.4", "Browser")
    issue_token(user, PASSWORD_RESET)
    db_session.commit()
    session_id = db_session.scalar(select(UserSession.id).where(UserSession.user_id == user.id))
    url = f"/support/users/{user.id}/" + path.format(session_id=session_id)

    response = client.post(url, headers={"HX-Request": "true"}, environ_base={"REMOTE_ADDR": "192.0.2.55"})
    assert response.status_code == 200 and 'id="user-panel"' in response.data.decode()
    db_session.expire_all()
    (event,) = db_session.scalars(select(AuditEvent).where(AuditEvent.object_id == user.id,
                                                           AuditEvent.object_type == "users")).all()
    assert (event.action, event.actor_id, event.ip_address) == (action, staff.id, "192.0.2.55")
    changes = dict(event.changes)
    if action == "account.unlock":
        assert changes["locked_until"][0].startswith(ANY_LOCK_END)
        changes["locked_until"][0] = ANY_LOCK_END
    assert changes == expected_changes(action, staff, session_id)
    assert action in client.get(f"/support/users/{user.id}").data.decode(), "the history shows it"


def test_expire_links_leaves_no_link_that_works(client, db_session, staff, mailbox):
    user = make_user(email_verified_at=None)
    reset, verification = issue_token(user, PASSWORD_RESET), issue_token(user, EMAIL_VERIFICATION)
    db_session.commit()
    assert client.application.test_client().get(f"/password/reset/{reset}").status_code == 200, "it worked before"

    assert client.post(f"/support/users/{user.id}/tokens/expire").status_code == 302

    visitor = client.application.test_client()
    assert visitor.get(f"/password/reset/{reset}").status_code == 410
    assert visitor.post(f"/password/reset/{reset}", data={"password": "a brand new passphrase",
                                                          "confirm": "a brand new passphrase"}).status_code == 410
    assert visitor.post(f"/verify-email/{verification}").status_code == 410
    db_session.expire_all()
    assert user.email_verified_at is None and verify_password(user.password_hash, PASSWORD)


def test_sign_out_everywhere_ends_every_session_of_the_user_only(client, db_session, staff):
    user, bystander = make_user(), make_user()
    laptop, phone, other = (client.application.test_client() for _ in range(3))
    login(laptop, user)
    login(phone, user, remember=True)
    login(other, bystander)

    assert client.post(f"/support/users/{user.id}/sessions/revoke").status_code == 302

    phone.delete_cookie("session")  # the remember-me cookie alone must not bring it back
    for device in (laptop, phone):
        response = device.get("/account")
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert other.get("/account").status_code == 200, "another user's session is untouched"
    assert client.get(f"/support/users/{user.id}").status_code == 200, "the agent stays signed in"
    db_session.expire_all()
    ended_by = db_session.scalars(select(UserSession.revoked_by_id).where(UserSession.user_id == user.id)).all()
    assert ended_by == [staff.id, staff.id], "each session records who ended it"


def test_reset_link_goes_to_the_user_only(client, db_session, staff, mailbox):
    user = make_user()
    response = client.post(f"/support/users/{user.id}/password-reset", follow_redirects=True)
    (message,) = mailbox
    assert (message["To"], message["Subject"]) == (user.email, "Minion Console support sent you a password reset link")
    link = link_in(message)
    assert link.rsplit("/", 1)[1] not in response.data.decode(), "the agent never sees the link"
    token = db_session.scalar(select(Token).where(Token.user_id == user.id))
    assert token.issued_by_id == staff.id


def test_lock_signs_the_user_out_and_blocks_sign_in_until_unlocked(client, db_session, staff):
    user = make_user()
    user_client = client.application.test_client()
    login(user_client, user)
    client.post(f"/support/users/{user.id}/lock")
    db_session.expire_all()
    assert is_staff_locked(user)
    assert user_client.get("/").status_code == 302
    assert attempt_login(user_client, user).status_code == 200, "a locked account cannot sign in"
    client.post(f"/support/users/{user.id}/unlock")
    assert login(user_client, user).status_code == 302


def test_support_cannot_act_on_an_admin(client, db_session, staff):
    admin = make_user("admin")
    assert client.get(f"/support/users/{admin.id}").status_code == 200
    assert client.post(f"/support/users/{admin.id}/lock").status_code == 403
    db_session.expire_all()
    assert admin.locked_until is None


def test_revoking_another_users_session_through_a_user_page_is_not_found(client, db_session, staff):
    user, other = make_user(), make_user()
    start_session(other, None, None)
    db_session.commit()
    theirs = db_session.scalar(select(UserSession.id).where(UserSession.user_id == other.id))
    assert client.post(f"/support/users/{user.id}/sessions/{theirs}/revoke").status_code == 404
    db_session.expire_all()
    assert db_session.scalar(select(UserSession.is_active).where(UserSession.id == theirs))


def action_took_effect(path: str, user, raw_token: str, mailbox) -> bool:
    """Whether the support action at ``path`` has done its work on ``user`` (set up by the test below)."""
    from webapp.extensions import db

    db.session.expire_all()
    if path in ("password-reset", "verification"):
        return [message["To"] for message in mailbox] == [user.email]
    if path == "tokens/expire":
        return usable_token(raw_token, PASSWORD_RESET) is None
    if path == "sessions/revoke":
        return not db.session.scalar(select(UserSession.is_active).where(UserSession.user_id == user.id))
    if path == "lock":
        return is_staff_locked(user)
    return user.locked_until is None  # unlock


@pytest.mark.parametrize(("path", "permission"), [
    ("password-reset", "tokens.issue"), ("verification", "tokens.issue"), ("tokens/expire", "tokens.issue"),
    ("sessions/revoke", "sessions.revoke"), ("lock", "accounts.lock"), ("unlock", "accounts.lock"),
])
def test_each_action_needs_its_own_permission(client, db_session, mailbox, path, permission):
    viewer_role = Role(name="viewer", permissions=[
        p for p in ensure_roles()["admin"].permissions if p.code in ("users.read", "audit.read")
    ])
    db_session.add(viewer_role)
    viewer = make_user(role=None)
    viewer.roles = [viewer_role]
    db_session.flush()
    user = make_user(locked_until=STAFF_LOCK_UNTIL if path == "unlock" else None)
    start_session(user, None, None)
    raw_token = issue_token(user, PASSWORD_RESET)
    db_session.commit()
    login(client, viewer)
    assert client.get(f"/support/users/{user.id}").status_code == 200
    assert client.post(f"/support/users/{user.id}/{path}").status_code == 403
    assert not action_took_effect(path, user, raw_token, mailbox), "a refused action does nothing"
    viewer_role.permissions.append(next(p for p in ensure_roles()["admin"].permissions if p.code == permission))
    db_session.commit()
    assert client.post(f"/support/users/{user.id}/{path}").status_code == 302
    assert action_took_effect(path, user, raw_token, mailbox)


def test_audit_history_needs_audit_read(client, db_session, staff, monkeypatch):
    user = make_user()
    assert "History" in client.get(f"/support/users/{user.id}").data.decode()
    monkeypatch.setattr("webapp.support.views.has_permission", lambda who, code: code != "audit.read")
    response = client.get(f"/support/users/{user.id}")
    page = response.data.decode()
    assert response.status_code == 200 and user.email in page, "the rest of the page is there"
    assert "History" not in page
