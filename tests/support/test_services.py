"""The support console's reads and rules without HTTP."""
from datetime import datetime, timedelta, timezone

from tests.factories import make_user
from webapp.accounts.audit import record
from webapp.support.services import audit_history, may_act_on, search_users


def test_a_blank_search_lists_everyone_by_email_ignoring_case(db_session):
    emails = ["b@example.test", "A@example.test", "c@example.test"]
    for email in emails:
        make_user(email=email)
    found = [user.email for user in search_users("   ", 1, 100).items]
    assert [email for email in found if email in emails] == ["A@example.test", "b@example.test", "c@example.test"]


def test_search_matches_a_part_of_the_email_or_the_name_ignoring_case(db_session):
    by_email = make_user(email="ada.lovelace@example.test", display_name="Countess")
    by_name = make_user(email="x@example.test", display_name="Ada King")
    make_user(email="grace@example.test", display_name="Grace")
    assert [user.id for user in search_users(" ADA ", 1, 10).items] == [by_email.id, by_name.id]


def test_wildcards_in_a_search_are_plain_characters_and_results_sort_by_the_lowercased_email(db_session):
    # "_" sorts after the letters in upper case and before them in lower case: the order tells which.
    underscored = make_user(email="Ann_Lee@example.test", display_name="Ann")
    lettered = make_user(email="annblee@example.test", display_name="Ann_B")
    make_user(email="annxlee@example.test", display_name="Annx")  # "_" must not match any one character
    make_user(email="ann%lee@example.test", display_name="Percent")  # nor "%" stand for any characters
    assert [user.id for user in search_users("N_", 1, 10).items] == [underscored.id, lettered.id]
    assert [user.email for user in search_users("n%l", 1, 10).items] == ["ann%lee@example.test"]


def test_staff_may_act_only_on_accounts_holding_no_permission_they_lack(db_session):
    support, admin, user = make_user("support"), make_user("admin"), make_user()
    assert may_act_on(support, user) and may_act_on(support, make_user("support"))
    assert not may_act_on(support, admin)
    assert may_act_on(admin, support)


def test_history_holds_what_happened_to_the_account_and_what_its_owner_did_newest_first(db_session):
    user, other = make_user(), make_user()
    about = record("account.lock", user, {}, actor=other)
    by = record("session.revoke", other, {}, actor=user)
    record("account.lock", other, {}, actor=other)
    db_session.flush()
    events = audit_history(user, 1, 10).items
    assert [event.id for event in events] == [by.id, about.id]


def test_history_sorts_by_when_things_happened_then_newest_id_and_skips_other_records_that_share_the_id(db_session):
    user = make_user()
    noon = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    late = record("account.unlock", user, {})
    late.created_at = noon
    early = record("account.lock", user, {})  # written after, but it happened first
    early.created_at = noon - timedelta(minutes=1)
    tie = record("tokens.expire", user, {})  # the same moment as ``late``: the newer id first
    tie.created_at = noon
    record("minion.xp_repair", ("minions", user.id), {})  # another table's record with the user's id
    db_session.flush()
    assert [event.id for event in audit_history(user, 1, 10).items] == [tie.id, late.id, early.id]
