"""A downgrade to a plan whose quotas the user already exceeds warns, before it is confirmed, what happens then."""
from __future__ import annotations

from sqlalchemy import select

from tests.conftest import login
from tests.factories import (
    make_ai_model, make_dataset, make_minion, make_plan, make_subscription, make_training_job, make_usage, make_user,
)
from webapp.billing import services
from webapp.minions.models import Minion


def subscriber_with_minions(plan, minions: int):
    """A user on ``plan`` with ``minions`` minions; the user and the subscription."""
    user = make_user()
    subscription = make_subscription(user, plan)
    model = make_ai_model()
    for _ in range(minions):
        make_minion(user, model)
    return user, subscription


def test_a_downgrade_below_current_use_lists_each_exceeded_quota(db_session):
    team = make_plan("team", 9900, name="Team", quotas={"minions": 10, "tokens": 5_000_000, "requests": 10_000})
    hobby = make_plan("hobby", 900, name="Hobby", quotas={
        "minions": 2, "tokens": 1_000_000, "requests": 50_000, "overage": {"tokens": {"per": 1_000, "cents": 2}}})
    user, subscription = subscriber_with_minions(team, 3)
    make_usage(user, "input_tokens", 1_200_000)
    make_usage(user, "requests", 9_000)  # within Hobby's 50,000

    quote = services.quote_plan_change(user, hobby)

    on = services.day_text(subscription.current_period_end)
    assert quote.kind == "downgrade"
    assert quote.warnings == (
        f"You used 1,200,000 tokens this period; Hobby allows 1,000,000 per period. From {on}, once a period "
        "reaches it, use past it is billed at $0.02 per 1,000.",
        f"You have 3 minions; Hobby allows 2. On {on} they all stay, but you cannot add another until you have "
        "fewer than 2.",
    )


def test_each_kind_of_quota_warns_in_its_own_words_and_a_quota_used_exactly_or_not_counted_does_not(db_session):
    team = make_plan("team", 9900, quotas={"minions": 10})
    hobby = make_plan("hobby", 900, name="Hobby", currency="EUR", quotas={
        "tokens": 1_000_000, "requests": 5, "training_minutes": 12, "training_jobs": 1, "concurrent_jobs": 1,
        "minions": 2, "datasets": 1, "dataset_bytes": 10, "overage": {"tokens": {"per": 1_000, "cents": 2}}})
    user, subscription = subscriber_with_minions(team, 3)
    for metric, quantity in (("input_tokens", 1_200_000), ("requests", 7), ("training_minutes", 12)):
        make_usage(user, metric, quantity)
    make_training_job(user)
    make_training_job(user)  # two queued jobs: two started this period, and two at once
    make_dataset(user)
    make_dataset(user)

    warnings = services.quote_plan_change(user, hobby).warnings

    on = services.day_text(subscription.current_period_end)
    assert warnings == (
        f"You used 1,200,000 tokens this period; Hobby allows 1,000,000 per period. From {on}, once a period "
        "reaches it, use past it is billed at €0.02 per 1,000.",
        f"You used 7 requests this period; Hobby allows 5 per period. From {on}, once a period reaches it, work "
        "that needs more is refused.",
        f"You started 2 training jobs this period; Hobby allows 1 per period. From {on}, no job starts past that "
        "number.",
        f"You have 3 minions; Hobby allows 2. On {on} they all stay, but you cannot add another until you have "
        "fewer than 2.",
        f"You have 2 datasets; Hobby allows 1. On {on} they all stay, but you cannot add another until you have "
        "fewer than 1.",
    )


def test_a_downgrade_within_current_use_has_no_warning(db_session):
    team = make_plan("team", 9900, quotas={"minions": 10})
    hobby = make_plan("hobby", 900, quotas={"minions": 2, "requests": 5})
    user, _ = subscriber_with_minions(team, 1)
    make_usage(user, "requests", 4)
    assert services.quote_plan_change(user, hobby).warnings == ()


def test_minions_are_counted_as_the_new_plan_counts_them(db_session):
    """Whether retired minions count is the new plan's option once the move is made, not the current plan's."""
    counts_retired = make_plan("team", 9900, quotas={"minions": 10, "minions_count_archived": True})
    active_only = make_plan("hobby", 900, name="Hobby", quotas={"minions": 2})
    user, subscription = subscriber_with_minions(counts_retired, 3)
    db_session.scalars(select(Minion).where(Minion.owner_user_id == user.id)).first().status = "retired"
    db_session.flush()
    assert services.quote_plan_change(user, active_only).warnings == (), "2 active minions fit Hobby's 2"

    strict = make_plan("strict", 500, name="Strict", quotas={"minions": 2, "minions_count_archived": True})
    subscription.plan = active_only
    db_session.flush()
    on = services.day_text(subscription.current_period_end)
    assert services.quote_plan_change(user, strict).warnings == (
        f"You have 3 minions; Strict allows 2. On {on} they all stay, but you cannot add another until you have "
        "fewer than 2.",)


def test_the_confirmation_warns_before_the_move_is_scheduled(client, db_session):
    team = make_plan("team", 9900, name="Team", quotas={"minions": 10})
    make_plan("hobby", 900, name="Hobby", quotas={"minions": 2, "requests": 5})
    user, subscription = subscriber_with_minions(team, 3)
    make_usage(user, "requests", 7)
    db_session.commit()
    login(client, user)

    page = client.get("/account/subscription/change?plan=hobby").get_data(as_text=True)

    assert "You already use more than Hobby allows." in page
    assert "You have 3 minions; Hobby allows 2." in page
    assert "You used 7 requests this period; Hobby allows 5 per period" in page
    assert "work that needs more is refused" in page and "Schedule the move anyway" in page
    db_session.expire_all()
    assert subscription.pending_plan_id is None, "nothing changes before the confirmation"
