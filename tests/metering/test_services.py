"""record_usage: idempotent batches, refusals with reasons, the rollup and what reads it, verify and repair."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select, update

from tests.factories import make_ai_model, make_plan, make_provider, make_subscription, make_usage, make_user
from webapp import quotas
from webapp.accounts.models import AuditEvent, User
from webapp.billing import services as billing
from webapp.billing.models import UsageRecord
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.models import UsageRollup
from webapp.metering.services import (
    UsageEvent, allowance_answer, record_usage, repair_rollup, rollup_mismatches, slice_start, store_usage,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def subscribed(quotas_: dict | None = None, start: datetime = NOW - timedelta(days=3, hours=5)):
    user = make_user()
    plan = make_plan(quotas=quotas_ or {"tokens": 1_000, "requests": 10})
    return user, make_subscription(user, plan, current_period_start=start)


def events(user, count: int, prefix: str = "e", metric: str = "input_tokens", at: datetime = NOW, **fields):
    return [UsageEvent(f"{prefix}-{user.id}-{n}", user.id, metric, 10 + n, at, **fields) for n in range(count)]


def stored(user) -> int:
    return db.session.scalar(select(func.count(UsageRecord.id)).where(UsageRecord.user_id == user.id))


def test_a_batch_sent_twice_is_stored_once_and_counted_as_duplicates(db_session):
    user, _ = subscribed()
    batch = events(user, 5)
    first, second = record_usage(batch, NOW), record_usage(batch, NOW)
    assert (first.accepted, first.duplicated, first.refused) == (5, 0, [])
    assert (second.accepted, second.duplicated, second.refused) == (0, 5, [])
    assert stored(user) == 5
    assert quotas.period_usage(user.id, quotas.allowance(user, NOW)) == {"input_tokens": sum(range(10, 15))}


def test_an_id_repeated_inside_one_batch_is_stored_once(db_session):
    user, _ = subscribed()
    event = events(user, 1)[0]
    recorded = record_usage([event, event, event], NOW)
    assert (recorded.accepted, recorded.duplicated) == (1, 2)
    assert stored(user) == 1


def test_refused_events_say_why_and_the_rest_are_stored(db_session):
    user, subscription = subscribed()
    model = make_ai_model(provider_id=make_provider(slug="acme").id, model_key="chat-1")
    batch = [
        UsageEvent("ok-slug", user.id, "requests", 1, NOW, "acme/chat-1"),
        UsageEvent("ok-id", user.id, "requests", 1, NOW, model.id),
        UsageEvent("no-user", 2**31 - 1, "requests", 1, NOW),
        UsageEvent("no-model", user.id, "requests", 1, NOW, "acme/nothing"),
        UsageEvent("no-model-id", user.id, "requests", 1, NOW, 2**31 - 1),
        UsageEvent("too-old", user.id, "requests", 1, subscription.current_period_start - timedelta(seconds=1)),
        UsageEvent("too-new", user.id, "requests", 1, NOW + timedelta(minutes=6)),
        UsageEvent("soon", user.id, "requests", 1, NOW + timedelta(minutes=4)),
    ]
    recorded = record_usage(batch, NOW)
    reasons = {refusal.event_id: refusal.reason for refusal in recorded.refused}
    assert recorded.accepted == 3 and recorded.duplicated == 0
    assert set(reasons) == {"no-user", "no-model", "no-model-id", "too-old", "too-new"}
    assert reasons["no-user"] == f"There is no user #{2**31 - 1}."
    assert "acme/nothing" in reasons["no-model"]
    assert "before the user's open period" in reasons["too-old"]
    assert "300 seconds in the future" in reasons["too-new"]
    models = dict(db.session.execute(select(UsageRecord.event_id, UsageRecord.model_id)
                                     .where(UsageRecord.user_id == user.id)).all())
    assert models == {"ok-slug": model.id, "ok-id": model.id, "soon": None}
    subscriptions = set(db.session.scalars(select(UsageRecord.subscription_id).where(UsageRecord.user_id == user.id)))
    assert subscriptions == {subscription.id}


def test_a_user_without_a_subscription_is_held_to_the_signup_plans_period(db_session):
    user = make_user(created_at=NOW - timedelta(days=45))
    period_start = user.created_at + timedelta(days=30)
    recorded = record_usage([UsageEvent("before", user.id, "requests", 1, period_start - timedelta(hours=1)),
                             UsageEvent("inside", user.id, "requests", 2, period_start + timedelta(hours=1))], NOW)
    assert recorded.accepted == 1 and [r.event_id for r in recorded.refused] == ["before"]


def test_slices_are_cut_at_period_boundaries_inside_a_day():
    start, end = datetime(2026, 11, 28, 17, 30, tzinfo=timezone.utc), datetime(2026, 12, 28, 17, 30, tzinfo=timezone.utc)
    day = datetime(2026, 11, 28, tzinfo=timezone.utc)
    assert slice_start(datetime(2026, 11, 28, 9, tzinfo=timezone.utc), (start, end)) == day
    assert slice_start(datetime(2026, 11, 28, 17, 30, tzinfo=timezone.utc), (start, end)) == start
    assert slice_start(datetime(2026, 11, 28, 23, tzinfo=timezone.utc), (start, end)) == start
    assert slice_start(datetime(2026, 12, 28, 18, tzinfo=timezone.utc), (start, end)) == end
    assert slice_start(datetime(2026, 12, 1, 3, tzinfo=timezone.utc), (start, end)) == datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_the_period_sums_are_exact_where_a_period_starts_and_ends_inside_a_day(db_session):
    start = datetime(2026, 11, 28, 17, 30, tzinfo=timezone.utc)
    user, subscription = subscribed(start=start)
    # Before the period (history a seed may write), inside it on its first and last days, and after it.
    for event_id, at, quantity in (("earlier-that-day", start - timedelta(hours=2), 1000),
                                   ("first-day", start + timedelta(hours=1), 7),
                                   ("last-day", subscription.current_period_end - timedelta(hours=1), 5),
                                   ("next-period", subscription.current_period_end + timedelta(hours=1), 300)):
        make_usage(user, "input_tokens", quantity, occurred_at=at)
    terms = quotas.allowance(user, start + timedelta(days=3))
    assert quotas.used(user, "tokens", terms) == 12
    days = {day.day: day.tokens for day in billing.daily_usage(user, subscription, now=start + timedelta(days=3))}
    assert days[start.date()] == 7, "the chart's first day counts only the period's part of it"


def test_the_meters_read_the_rollup_in_a_constant_number_of_queries(db_session, count_queries):
    user, subscription = subscribed({"tokens": 1_000_000, "requests": 1_000, "training_minutes": 600})

    def page_queries() -> int:
        with count_queries() as counter:
            billing.usage_meters(user, subscription)
            billing.daily_usage(user, subscription)
        return counter.count

    record_usage(events(user, 3, "few"), NOW)
    few = page_queries()
    for day in range(3):
        record_usage(events(user, 200, f"many-{day}", at=utcnow() - timedelta(days=day)), utcnow())
    assert page_queries() == few


def test_training_minutes_go_through_the_metering_path_once_per_job(db_session):
    from tests.factories import make_training_job
    from webapp.training.services import transition

    user, _ = subscribed({"training_minutes": 600})
    job = make_training_job(user, status="running")
    job.started_at = utcnow() - timedelta(minutes=4, seconds=10)
    transition(job, "succeeded")
    record = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == user.id)).one()
    assert (record.event_id, record.metric, record.quantity) == (f"training-job-{job.id}", "training_minutes", 5)
    assert quotas.used(user, "training_minutes", quotas.allowance(user)) == 5


def test_allowance_answer_says_what_is_left_and_what_is_blocked(db_session):
    user, _ = subscribed({"tokens": 1_000, "requests": 2, "overage": {"tokens": {"per": 1000, "cents": 2}}})
    record_usage([UsageEvent("a", user.id, "input_tokens", 700, NOW), UsageEvent("b", user.id, "output_tokens", 600, NOW),
                  UsageEvent("c", user.id, "requests", 2, NOW)], NOW)
    answer = allowance_answer(user.id, NOW)
    tokens, requests = answer["quotas"]["tokens"], answer["quotas"]["requests"]
    assert (tokens["used"], tokens["remaining"], tokens["at_limit"], tokens["blocked"]) == (1300, 0, "overage", False)
    assert tokens["overage_price"] == {"per": 1000, "cents": 2}
    assert (requests["used"], requests["remaining"], requests["blocked"]) == (2, 0, True)
    assert answer["quotas"]["training_minutes"]["limit"] is None
    assert answer["blocked"] == {"input_tokens": False, "output_tokens": False, "requests": True}
    assert allowance_answer(2**31 - 1, NOW) is None


def test_verify_finds_a_rollup_edited_by_hand_and_repair_rebuilds_it(db_session):
    user, _ = subscribed()
    record_usage(events(user, 4), NOW)
    assert rollup_mismatches() == []
    db.session.execute(update(UsageRollup).where(UsageRollup.user_id == user.id).values(quantity=1))
    (mismatch,) = rollup_mismatches()
    assert (mismatch.user_id, mismatch.day, mismatch.metric) == (user.id, NOW.date(), "input_tokens")
    assert (mismatch.rollup, mismatch.raw) == (1, sum(range(10, 14)))
    repair_rollup([mismatch], NOW)
    assert rollup_mismatches() == []
    assert quotas.used(user, "tokens", quotas.allowance(user, NOW)) == sum(range(10, 14))


def rollups() -> list[tuple]:
    return sorted(db.session.execute(select(UsageRollup.user_id, UsageRollup.day, UsageRollup.starts_at,
                                            UsageRollup.metric, UsageRollup.quantity)).all())


def test_repair_rebuilds_only_the_mismatched_rollup_cut_at_the_period_start_and_audits_it(db_session):
    # Both periods began NOW - 3 days 5 hours, at 07:00 of that day: its rollup has two slices.
    (ada, _), (bob, _) = subscribed(), subscribed()
    period_day = NOW - timedelta(days=3, hours=3)  # 09:00 on the period's first day
    for user in (ada, bob):
        record_usage([*events(user, 2, "day1", at=period_day), *events(user, 2, "later", at=period_day + timedelta(hours=5)),
                      *events(user, 1, "day2", at=period_day + timedelta(days=1)),
                      *events(user, 1, "asks", metric="requests", at=period_day)], NOW)
    # An event of the previous period on the same day, as a late import wrote it before the period began.
    db.session.add(UsageRecord(event_id=f"early-{ada.id}", user_id=ada.id, metric="input_tokens", quantity=7,
                               occurred_at=period_day - timedelta(hours=4)))
    db.session.add(UsageRollup(user_id=ada.id, day=period_day.date(), starts_at=period_day - timedelta(hours=9),
                               metric="input_tokens", quantity=7))
    db.session.flush()
    healthy = rollups()
    assert any(row[2] == NOW - timedelta(days=3, hours=5) for row in healthy), "the day is cut at the period start"
    db.session.execute(update(UsageRollup).where(UsageRollup.user_id == ada.id, UsageRollup.day == period_day.date(),
                                                 UsageRollup.metric == "input_tokens").values(quantity=1))
    (mismatch,) = rollup_mismatches()

    repair_rollup([mismatch], NOW)

    assert rollups() == healthy, "only the mismatched rollup changed, back to its slices"
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "usage_rollup.repair")).one()
    assert (audit.object_type, audit.object_id) == ("users", ada.id)
    assert audit.changes == {"day": period_day.date().isoformat(), "metric": "input_tokens",
                             "quantity": [2, 7 + 10 + 11 + 10 + 11]}


def store(user, metric: str, *quantities_at: tuple[int, datetime], now: datetime = NOW) -> None:
    """Usage records of ``user`` as they are (no refusals), written with their rollup as at ``now``."""
    store_usage([{"event_id": f"{metric}-{user.id}-{at.isoformat()}", "user_id": user.id, "metric": metric,
                  "quantity": quantity, "occurred_at": at, "model_id": None, "subscription_id": None}
                 for quantity, at in quantities_at], now)


def test_repair_rebuilds_the_day_from_its_own_records_cut_at_the_period_open_at_the_time_given(db_session):
    # A user on the signup plan: 30-day periods from sign-up, so which period is open depends on the time.
    user = make_user(created_at=datetime(2021, 2, 6, 17, 30, tzinfo=timezone.utc))
    then = datetime(2021, 3, 10, 12, tzinfo=timezone.utc)  # in the period begun 2021-03-08 17:30
    day = datetime(2021, 3, 8, tzinfo=timezone.utc)
    store(user, "input_tokens", (1, day - timedelta(minutes=1)), (2, day), (4, day + timedelta(hours=9)),
          (8, day + timedelta(hours=17, minutes=30)), (16, day + timedelta(hours=20)), (32, day + timedelta(days=1)),
          now=then)
    store(user, "requests", (64, day + timedelta(hours=1)), now=then)
    healthy = rollups()
    assert [(row[2], row[4]) for row in healthy if row[1] == day.date() and row[3] == "input_tokens"] == [
        (day, 2 + 4), (day + timedelta(hours=17, minutes=30), 8 + 16)]
    db.session.execute(update(UsageRollup).where(UsageRollup.day == day.date()).values(quantity=0))
    mismatches = rollup_mismatches()
    assert [(m.day, m.metric, m.rollup, m.raw) for m in mismatches] == [
        (day.date(), "input_tokens", 0, 30), (day.date(), "requests", 0, 64)]

    repair_rollup(mismatches, then)

    assert rollups() == healthy, "the day before and the day after are left as they were"


def test_a_mismatch_of_a_user_deleted_since_the_check_is_repaired_to_nothing_and_audited(db_session):
    user, _ = subscribed()
    record_usage(events(user, 2), NOW)
    db.session.execute(update(UsageRollup).where(UsageRollup.user_id == user.id).values(quantity=0))
    (mismatch,) = rollup_mismatches()
    db.session.execute(delete(User).where(User.id == user.id))

    repair_rollup([mismatch], NOW)

    assert rollups() == []
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "usage_rollup.repair")).one()
    assert (audit.object_type, audit.object_id, audit.changes["quantity"]) == ("users", user.id, [0, 21])


@pytest.mark.parametrize("repair", [False, True])
def test_the_verify_command_exits_1_on_a_mismatch_and_repairs_on_request(app, db_session, repair):
    user, _ = subscribed()
    record_usage(events(user, 2), NOW)
    db.session.execute(update(UsageRollup).where(UsageRollup.user_id == user.id).values(quantity=0))
    result = app.test_cli_runner().invoke(args=["metering", "verify"] + (["--repair"] if repair else []))
    assert f"user #{user.id} {NOW.date()} input_tokens: rollup 0, records 21" in result.output
    assert result.exit_code == (0 if repair else 1)
    assert (rollup_mismatches() == []) is repair
