"""Account rules without HTTP, each with its effect and its audit row written out."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from tests.accounts.conftest import link_in, path_of
from tests.factories import PASSWORD, make_user
from webapp.accounts import services
from webapp.accounts.models import AuditEvent, UserSession
from webapp.accounts.sessions import start_session
from webapp.accounts.tokens import EMAIL_VERIFICATION, PASSWORD_RESET, issue_token
from webapp.db import utcnow


def audit_of(db_session, user, action: str) -> list[dict]:
    return list(db_session.scalars(select(AuditEvent.changes).where(
        AuditEvent.action == action, AuditEvent.object_type == "users", AuditEvent.object_id == user.id)))


def test_an_email_is_found_whatever_its_case_and_surrounding_spaces(db_session):
    user = make_user(email="Grace.Hopper@Navy.test")
    assert services.find_user_by_email("  grace.hopper@NAVY.test ") is user
    assert services.find_user_by_email("grace.hopper@navy.tes") is None


def test_a_deactivated_account_is_refused_with_the_right_password(db_session):
    user = make_user(is_active=False)
    assert services.authenticate(user.email, PASSWORD) is None
    assert user.last_login_at is None


def test_a_sign_in_is_recorded_as_the_last_login(db_session):
    user = make_user()
    before = utcnow()
    assert services.authenticate(user.email.upper(), PASSWORD) is user
    assert before <= user.last_login_at <= utcnow()


def test_reset_password_spends_the_link_clears_failures_and_audits_the_sessions_ended(db_session, mailbox):
    user = make_user(failed_login_count=3)
    start_session(user, None, None)
    start_session(user, None, None)
    raw = issue_token(user, PASSWORD_RESET)
    db_session.commit()
    assert services.reset_password(raw, "a brand new passphrase") is user
    assert user.failed_login_count == 0
    assert audit_of(db_session, user, "password.reset") == [{"sessions_revoked": 2}]
    (changed,) = mailbox
    assert (changed["To"], changed["Subject"]) == (user.email, "Your Minion Console password was changed")
    assert f"Hello {user.display_name}," in changed.get_content() and f"({user.email})" in changed.get_content()
    assert path_of(link_in(changed)) == "/password/forgot", "the mail links to a fresh reset"
    assert services.reset_password(raw, "another new passphrase") is None, "a link works once"


def test_verifying_again_keeps_the_first_verification_time(db_session):
    first = utcnow() - timedelta(days=3)
    user = make_user(email_verified_at=first)
    raw = issue_token(user, EMAIL_VERIFICATION)
    assert services.verify_email(raw) is user
    assert user.email_verified_at == first
    assert audit_of(db_session, user, "email.verify") == [{"email": user.email}]
    assert db_session.scalar(select(AuditEvent.actor_id).where(AuditEvent.action == "email.verify")) == user.id


def test_verifying_an_unverified_address_stamps_it_now(db_session):
    user = make_user(email_verified_at=None)
    before = utcnow()
    assert services.verify_email(issue_token(user, EMAIL_VERIFICATION)) is user
    assert before <= user.email_verified_at <= utcnow()
    assert services.verify_email("not-a-token") is None


def test_a_reset_request_mails_only_an_active_account(db_session, mailbox):
    active, inactive = make_user(), make_user(is_active=False)
    for email in (inactive.email, "nobody@example.test", f"  {active.email.upper()} "):
        services.request_password_reset(email)
    assert [message["To"] for message in mailbox] == [active.email]
    assert audit_of(db_session, active, "password_reset.issue") == [{"issued_by": "self"}]


def test_active_sessions_leave_out_ended_and_expired_ones_and_put_the_latest_first(db_session, monkeypatch):
    now = utcnow()
    monkeypatch.setattr(services, "utcnow", lambda: now)
    user = make_user()
    for _ in range(6):
        start_session(user, None, None)
    db_session.flush()
    latest, older, tied_older, tied_newer, ended, expired = db_session.scalars(
        select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.id)).all()
    latest.last_seen_at = now - timedelta(minutes=1)  # the oldest row, used last
    older.last_seen_at = now - timedelta(hours=2)
    tied_older.last_seen_at = tied_newer.last_seen_at = now - timedelta(hours=1)
    ended.is_active = False
    expired.expires_at = now  # expiring this very moment
    db_session.flush()
    assert services.active_sessions(user) == [latest, tied_newer, tied_older, older]


def test_revoking_a_session_that_is_not_the_users_changes_nothing(db_session):
    user, other = make_user(), make_user()
    start_session(other, None, None)
    db_session.flush()
    theirs = db_session.scalar(select(UserSession).where(UserSession.user_id == other.id))
    assert services.revoke_session(user, theirs.id, actor=user) is False
    db_session.expire_all()
    assert theirs.is_active and audit_of(db_session, user, "session.revoke") == []
    assert services.revoke_session(other, theirs.id, actor=other) is True
    assert audit_of(db_session, other, "session.revoke") == [{"session_id": theirs.id}]
    assert services.revoke_session(other, theirs.id, actor=other) is False, "already ended"


def test_unlock_clears_the_lock_and_the_failed_count(db_session):
    staff, user = make_user("support"), make_user(failed_login_count=4)
    assert services.lock_account(user, staff) == 0
    assert services.is_staff_locked(user) and services.is_locked(user)
    services.unlock_account(user, staff)
    assert (user.locked_until, user.failed_login_count) == (None, 0)
    assert not services.is_locked(user)


def test_a_temporary_lock_is_not_a_staff_lock(db_session):
    user = make_user(locked_until=utcnow() + timedelta(minutes=5))
    assert services.is_locked(user) and not services.is_staff_locked(user)
    user.locked_until = utcnow() - timedelta(seconds=1)
    assert not services.is_locked(user)


def test_change_password_with_a_wrong_current_one_changes_nothing(db_session, mailbox):
    user = make_user()
    start_session(user, None, None)
    old_hash = user.password_hash
    assert services.change_password(user, "not my password", "a brand new passphrase", None) is False
    assert user.password_hash == old_hash and mailbox == []
    assert db_session.scalar(select(UserSession.is_active).where(UserSession.user_id == user.id))


def audit_rows(db_session, user) -> list[tuple]:
    """(action, actor id, changes) of every audit row on ``user``, oldest first."""
    return [tuple(row) for row in db_session.execute(
        select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.changes)
        .where(AuditEvent.object_type == "users", AuditEvent.object_id == user.id).order_by(AuditEvent.id))]


def revoked_by_ids(db_session, user) -> list[int | None]:
    db_session.expire_all()
    return list(db_session.scalars(
        select(UserSession.revoked_by_id).where(UserSession.user_id == user.id).order_by(UserSession.id)))


def test_support_actions_outside_a_request_audit_their_actor_and_who_ended_each_session(db_session, mailbox):
    # Without a request there is no signed-in user for the audit to fall back on: the actor passed is the one recorded.
    staff = make_user("support")
    user = make_user(locked_until=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    start_session(user, None, None)
    issue_token(user, PASSWORD_RESET)
    assert services.lock_account(user, staff) == 1
    services.unlock_account(user, staff)
    assert services.expire_outstanding_tokens(user, staff) == 1
    start_session(user, None, None)
    assert services.revoke_all_sessions(user, staff) == 1
    start_session(user, None, None)
    last = db_session.scalar(select(func.max(UserSession.id)).where(UserSession.user_id == user.id))
    assert services.revoke_session(user, last, staff) is True
    assert audit_rows(db_session, user) == [
        ("account.lock", staff.id, {"locked_until": ["2026-01-02T03:04:05+00:00", "until unlocked"], "sessions_revoked": 1}),
        ("account.unlock", staff.id, {"locked_until": [services.STAFF_LOCK_UNTIL.isoformat(), None]}),
        ("tokens.expire", staff.id, {"tokens_expired": 1}),
        ("sessions.revoke_all", staff.id, {"sessions_revoked": 1, "kept_session_id": None}),
        ("session.revoke", staff.id, {"session_id": last}),
    ]
    assert revoked_by_ids(db_session, user) == [staff.id, staff.id, staff.id]


def test_change_password_signs_out_the_other_sessions_as_the_user_and_audits_how_many(db_session, mailbox):
    user = make_user()
    start_session(user, None, None)
    start_session(user, None, None)
    kept, other = db_session.scalars(select(UserSession.id).where(UserSession.user_id == user.id).order_by(UserSession.id))
    assert services.change_password(user, PASSWORD, "a brand new passphrase", keep_session_id=kept) is True
    assert audit_rows(db_session, user) == [("password.change", user.id, {"sessions_revoked": 1})]
    assert revoked_by_ids(db_session, user) == [None, user.id], "the kept session is still live"
    assert [db_session.get(UserSession, kept).is_active, db_session.get(UserSession, other).is_active] == [True, False]


def test_a_reset_link_sent_by_support_names_them_in_the_mail_and_the_audit_outside_a_request(db_session, mailbox):
    staff = make_user("support", display_name="Sam Support")
    user = make_user(email="ada@example.test", display_name="Ada")
    services.send_password_reset(user, issued_by=staff, ip_address="192.0.2.9")
    services.send_password_reset(user)
    by_support, by_self = mailbox
    assert by_support.get_content() == (
        "Hello Ada,\n\n"
        "Minion Console support (Sam Support) sent you a link to reset the password of your account (ada@example.test).\n"
        "To choose a new password, open this link within 60 minutes:\n\n"
        f"{link_in(by_support)}\n\n"
        "The link works once. If you did not ask support for this, ignore this message and tell us: "
        "your password stays as it is.\n\nMinion Console\n")
    assert "Someone asked to reset the password of your Minion Console account (ada@example.test)." \
        in by_self.get_content()
    assert [tuple(row) for row in db_session.execute(
        select(AuditEvent.action, AuditEvent.actor_id, AuditEvent.ip_address, AuditEvent.changes)
        .where(AuditEvent.object_id == user.id, AuditEvent.object_type == "users").order_by(AuditEvent.id))] == [
        ("password_reset.issue", staff.id, "192.0.2.9", {"issued_by": staff.email}),
        ("password_reset.issue", None, None, {"issued_by": "self"}),
    ]


def test_a_lock_is_over_at_the_moment_it_ends(db_session, monkeypatch):
    now = utcnow()
    monkeypatch.setattr(services, "utcnow", lambda: now)
    user = make_user()
    for locked_until, locked in ((None, False), (now - timedelta(seconds=1), False), (now, False),
                                 (now + timedelta(microseconds=1), True)):
        user.locked_until = locked_until
        assert services.is_locked(user) is locked, locked_until
