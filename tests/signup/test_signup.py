"""Sign-up: the account on the free plan, the same answer for a taken address, verification, the switch."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.accounts.conftest import link_in, path_of, without_csrf
from tests.conftest import login
from tests.factories import PASSWORD, make_plan, make_provider, make_provider_config, make_user
from webapp.accounts.models import AuditEvent, Role, User
from webapp.accounts.permissions import ROLE_DESCRIPTIONS
from webapp.billing.models import UserSubscription
from webapp.extensions import db
from webapp.signup import services

FORM = {"email": "new.person@example.test", "display_name": "New  Person", "password": PASSWORD,
        "confirm": PASSWORD}


@pytest.fixture
def free_plan(db_session):
    return make_plan("free", quotas={"minions": 2, "training_jobs": 2})


@pytest.fixture
def hashes(monkeypatch):
    """Counts the password hashes sign-up computes: the costly step must happen on every path."""
    calls = []
    real = services.hash_password

    def counting(password):
        calls.append(password)
        return real(password)

    monkeypatch.setattr(services, "hash_password", counting)
    return calls


def test_sign_up_makes_a_user_on_the_free_plan_and_mails_the_confirmation(client, db_session, free_plan, mailbox,
                                                                           hashes):
    make_user("admin"), make_user("support")  # other roles exist: sign-up must pick the default one
    response = client.post("/signup", data=FORM)
    assert response.status_code == 302 and response.headers["Location"] == "/signup/sent"
    user = db_session.scalar(select(User).where(User.email == FORM["email"]))
    assert user.display_name == "New Person" and user.email_verified_at is None
    assert [role.name for role in user.roles] == ["user"]
    subscription = db_session.scalar(select(UserSubscription).where(UserSubscription.user_id == user.id))
    assert subscription.plan_id == free_plan.id and subscription.status == "active"
    assert user.current_subscription_id == subscription.id
    actions = set(db_session.scalars(select(AuditEvent.action).where(AuditEvent.object_id.in_([user.id, subscription.id]))))
    assert {"account.signup", "subscription.start", "email_verification.issue"} <= actions
    signed_up = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "account.signup")).one()
    assert (signed_up.object_id, signed_up.actor_id) == (user.id, user.id)
    assert signed_up.changes == {"email": FORM["email"], "display_name": "New Person", "plan": "free"}
    started = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "subscription.start")).one()
    assert started.actor_id == user.id, "the new user started their own subscription"
    (message,) = mailbox
    assert message["To"] == FORM["email"] and "/verify-email/" in link_in(message)
    assert len(hashes) == 1
    # Not signed in by signing up: the answer is the same as for a taken address.
    assert client.get("/").status_code == 302


def test_the_first_sign_up_on_a_console_without_roles_makes_the_user_role_described(db_session, free_plan, mailbox):
    assert db_session.scalar(select(func.count()).select_from(Role)) == 0
    services.sign_up("first@example.test", "First", PASSWORD)
    services.sign_up("second@example.test", "Second", PASSWORD)
    (role,) = db_session.scalars(select(Role))
    assert (role.name, role.description) == ("user", ROLE_DESCRIPTIONS["user"])
    for user in db_session.scalars(select(User)):
        assert user.roles == [role]


def test_a_taken_address_gets_the_same_answer_and_the_same_work(client, db_session, free_plan, mailbox, hashes):
    existing = make_user(email="taken@example.test")
    fresh = client.post("/signup", data=FORM, follow_redirects=True)
    taken = client.post("/signup", data={**FORM, "email": "TAKEN@example.test"}, follow_redirects=True)
    assert fresh.status_code == taken.status_code == 200
    assert without_csrf(fresh.data) == without_csrf(taken.data)
    # The costly part, the password hash, and the mail happen once on each path.
    assert len(hashes) == 2
    assert [m["To"] for m in mailbox] == [FORM["email"], existing.email]
    assert mailbox[1]["Subject"] == "Someone tried to sign up with your address"
    note = mailbox[1].get_content()
    assert note.startswith(f"Hello {existing.display_name},") and "with taken@example.test, which already" in note
    assert "sign in instead:\n\nhttp://console.test/login\n" in note
    assert "reset it here:\n\nhttp://console.test/password/forgot\n" in note
    attempt = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "account.signup_attempt")).one()
    assert (attempt.object_id, attempt.actor_id, attempt.changes) == (existing.id, None, {"email": "TAKEN@example.test"})
    assert db_session.scalar(select(func.count()).select_from(User).where(
        func.lower(User.email) == "taken@example.test")) == 1


def test_the_mailed_link_confirms_the_address(client, db_session, free_plan, mailbox):
    client.post("/signup", data=FORM)
    link = path_of(link_in(mailbox[0]))
    assert client.get(link).status_code == 200
    assert client.post(link).status_code == 302
    user = db_session.scalar(select(User).where(User.email == FORM["email"]))
    db_session.refresh(user)
    assert user.email_verified_at is not None


def test_bad_input_is_refused_with_reasons(client, db_session, free_plan):
    response = client.post("/signup", data={**FORM, "email": "not-an-address", "password": "short",
                                            "confirm": "other"})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Enter an email address" in body and "at least" in body and "differ" in body


def test_sign_up_can_be_turned_off(app, client, db_session, free_plan):
    app.config["SIGNUP_ENABLED"] = False
    try:
        assert client.get("/signup").status_code == 404
        assert client.post("/signup", data=FORM).status_code == 404
        assert "Create an account" not in client.get("/login").get_data(as_text=True)
    finally:
        app.config["SIGNUP_ENABLED"] = True
    assert "Create an account" in client.get("/login").get_data(as_text=True)
    assert db_session.scalar(select(User).where(User.email == FORM["email"])) is None


def test_without_the_sign_up_plan_sign_up_is_closed(client, db_session):
    assert client.get("/signup").status_code == 404


def test_a_sign_up_plan_with_a_price_closes_sign_up_and_tells_the_operator(app, db_session, caplog):
    make_plan(app.config["SIGNUP_PLAN"], 900)
    with pytest.raises(services.SignUpUnavailable,
                       match=r"^Sign-up is not open on this console\. Ask its administrators for an account\.$"):
        services.signup_plan()
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("ERROR", f"SIGNUP_PLAN {app.config['SIGNUP_PLAN']!r} names no free plan; sign-up is unavailable")]


def test_an_unverified_user_is_warned_and_kept_from_costly_work(client, db_session):
    user = make_user(email_verified_at=None)
    config = make_provider_config(user, make_provider(), api_key="sk-test-0123456789abcdef")
    login(client, user)
    assert "Send a new link" in client.get("/").get_data(as_text=True)
    refused = client.post(f"/account/providers/configs/{config.id}/test")
    assert refused.status_code == 403 and "Confirm your email address" in refused.get_data(as_text=True)


def test_sign_up_is_rate_limited_per_address(limited_app, limited_client):
    with limited_app.app_context():
        make_plan("free")
        db.session.commit()
    for number in range(3):
        # Each from another IP: the per-address limit counts them together.
        response = limited_client.post("/signup", data={**FORM, "email": "same@example.test"},
                                       environ_base={"REMOTE_ADDR": f"192.0.2.{number + 1}"})
        assert response.status_code == 302
    blocked = limited_client.post("/signup", data={**FORM, "email": "Same@example.test"},
                                  environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert blocked.status_code == 429


def test_control_characters_are_refused_or_dropped(client, db_session, free_plan):
    refused = client.post("/signup", data={**FORM, "email": "nul\x00@example.test"})
    assert refused.status_code == 400 and "email" in refused.get_data(as_text=True)
    assert db_session.scalar(select(User.id).where(User.email.like("nul%"))) is None
    client.post("/signup", data={**FORM, "display_name": "Bell\x07 Ringer"})
    assert db_session.scalar(select(User.display_name).where(User.email == FORM["email"])) == "Bell Ringer"
