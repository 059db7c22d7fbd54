"""A downgrade to a plan whose quotas the user already exceeds warns, before it is confirmed, what happens then."""
from __future__ import annotations

from tests.conftest import login
from tests.factories import make_ai_model, make_minion, make_plan, make_subscription, make_usage, make_user
from webapp.billing import services


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


def test_a_downgrade_within_current_use_has_no_warning(db_session):
    team = make_plan("team", 9900, quotas={"minions": 10})
    hobby = make_plan("hobby", 900, quotas={"minions": 2, "requests": 5})
    user, _ = subscriber_with_minions(team, 1)
    make_usage(user, "requests", 4)
    assert services.quote_plan_change(user, hobby).warnings == ()


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
