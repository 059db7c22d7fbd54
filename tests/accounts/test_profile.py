"""The profile on the account page: name, time zone, and an email change confirmed through the new address."""
from sqlalchemy import select

from tests.accounts.conftest import link_in, path_of
from tests.conftest import login
from tests.factories import PASSWORD, make_user
from webapp.accounts.models import AuditEvent
from webapp.accounts.profile import confirm_email_change, email_change_token, pending_email_change, update_profile

RESET_LINK = "http://console.test/password/forgot"


def own_audit(session, action: str, user) -> dict:
    """The changes of the one ``action`` audit record, which ``user`` made on their own account."""
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == action)).one()
    assert (event.object_type, event.object_id, event.actor_id) == ("users", user.id, user.id)
    return event.changes


def test_name_and_time_zone_are_saved_and_times_follow_the_zone(client, db_session):
    user = make_user(display_name="Old Name")
    db_session.commit()
    login(client, user)
    response = client.post("/account/profile", data={"display_name": "  New Name ", "time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    db_session.expire_all()
    assert (user.display_name, user.time_zone) == ("New Name", "Asia/Tokyo")
    page = client.get("/account").data.decode()
    assert "JST</time>" in page and "UTC</time>" not in page
    assert own_audit(db_session, "profile.update", user) == {
        "display_name": ["Old Name", "New Name"], "time_zone": ["UTC", "Asia/Tokyo"]}


def test_a_profile_update_outside_a_request_is_audited_as_the_user_s_own(db_session):
    user = make_user(display_name="Old Name")
    update_profile(user, "Old Name", "Europe/Paris")
    assert own_audit(db_session, "profile.update", user) == {"time_zone": ["UTC", "Europe/Paris"]}


def test_an_unknown_zone_or_empty_name_is_refused(client, db_session):
    user = make_user()
    db_session.commit()
    login(client, user)
    response = client.post("/account/profile", data={"display_name": "", "time_zone": "Mars/Olympus"})
    assert response.status_code == 422
    page = response.data.decode()
    assert "Not a valid choice" in page and 'aria-invalid="true"' in page
    db_session.expire_all()
    assert user.time_zone == "UTC"


def test_email_change_is_confirmed_through_the_new_address_and_announced_to_the_old(client, db_session, mailbox):
    user = make_user(email="before@example.test", display_name="Ada Lovelace")
    db_session.commit()
    login(client, user)
    response = client.post("/account/email", data={"email": "after@example.test", "current_password": PASSWORD})
    assert response.status_code == 302
    confirm, notice = mailbox
    assert (confirm["To"], confirm["Subject"]) == ("after@example.test", "Confirm your new Minion Console email address")
    assert (notice["To"], notice["Subject"]) == ("before@example.test",
                                                 "Your Minion Console email address is about to change")
    asked = confirm.get_content()
    assert asked.startswith("Hello Ada Lovelace,") and "use after@example.test" in asked
    assert "instead of before@example.test" in asked and "within 48 hours" in asked
    warned = notice.get_content()
    assert warned.startswith("Hello Ada Lovelace,") and "from\nbefore@example.test to after@example.test" in warned
    assert f"change your password now: {RESET_LINK}" in warned
    assert own_audit(db_session, "email_change.request", user) == {"email": ["before@example.test", "after@example.test"]}
    db_session.expire_all()
    assert user.email == "before@example.test", "nothing changes before the new address confirms"

    path = path_of(link_in(confirm))
    assert "after@example.test" in client.get(path).data.decode()
    db_session.expire_all()
    assert user.email == "before@example.test", "opening the link (a mail scanner's prefetch) changes nothing"
    assert client.post(path).status_code == 302
    db_session.expire_all()
    assert user.email == "after@example.test" and user.email_verified_at is not None
    changed = mailbox[-1]
    assert (changed["To"], changed["Subject"]) == ("before@example.test", "Your Minion Console email address was changed")
    told = changed.get_content()
    assert told.startswith("Hello Ada Lovelace,") and "from before@example.test to after@example.test" in told
    assert f"contact support: {RESET_LINK}" in told
    assert own_audit(db_session, "email_change.confirm", user) == {"email": ["before@example.test", "after@example.test"]}
    assert client.post(path).status_code == 410, "the link works once"


def test_email_change_needs_the_password_and_a_free_address(client, db_session, mailbox):
    user = make_user()
    make_user(email="taken@example.test")
    db_session.commit()
    login(client, user)
    wrong = client.post("/account/email", data={"email": "new@example.test", "current_password": "nope"})
    assert wrong.status_code == 422 and "not your current password" in wrong.data.decode()
    taken = client.post("/account/email", data={"email": "TAKEN@example.test", "current_password": PASSWORD})
    assert taken.status_code == 422 and "Another account uses that address" in taken.data.decode()
    assert mailbox == []


def test_a_link_is_void_once_its_new_address_is_taken_or_it_is_forged(app, db_session):
    user = make_user()
    token = email_change_token(user, "wanted@example.test")
    assert pending_email_change(token + "x") is None
    make_user(email="wanted@example.test")
    assert pending_email_change(token) is None


def test_confirming_changes_the_address(app, db_session, mailbox):
    user = make_user(email="one@example.test")
    change = pending_email_change(email_change_token(user, "two@example.test"))
    confirm_email_change(change)
    assert user.email == "two@example.test"
    assert pending_email_change(email_change_token(user, "three@example.test")).new_email == "three@example.test"
