"""record_usage: idempotent batches, refusals with reasons, the rollup and what reads it, verify and repair."""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone

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
    InvalidBatch, UsageEvent, allowance_answer, create_token, daily_totals, daily_totals_statement, parse_batch,
    record_usage, repair_rollup, rollup_mismatches, service_for_token, slice_start, store_usage,
)
from webapp.security import hash_token

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


def test_a_rollup_row_is_stamped_once_when_created_and_again_each_time_it_is_added_to(db_session):
    user, _ = subscribed()

    def stamps():
        return db.session.execute(select(UsageRollup.quantity, UsageRollup.created_at, UsageRollup.updated_at)
                                  .where(UsageRollup.user_id == user.id)).one()

    record_usage(events(user, 1, "first"), NOW)
    created = stamps()
    assert created.quantity == 10 and created.created_at == created.updated_at
    record_usage(events(user, 1, "second"), NOW)
    added = stamps()
    assert added.quantity == 10 + 10
    assert added.created_at == created.created_at and added.updated_at > created.updated_at


def test_an_id_repeated_inside_one_batch_is_stored_once(db_session):
    user, _ = subscribed()
    event = events(user, 1)[0]
    recorded = record_usage([event, event, event], NOW)
    assert (recorded.accepted, recorded.duplicated) == (1, 2)
    assert stored(user) == 1


def test_refused_events_say_why_and_the_rest_are_stored(db_session):
    user, subscription = subscribed()
    start = subscription.current_period_start
    model = make_ai_model(provider_id=make_provider(slug="acme").id, model_key="chat-1")
    batch = [
        UsageEvent("ok-slug", user.id, "requests", 1, NOW, "acme/chat-1"),
        UsageEvent("ok-id", user.id, "requests", 1, NOW, model.id),
        UsageEvent("no-user", 2**31 - 1, "requests", 1, NOW),
        UsageEvent("no-model", user.id, "requests", 1, NOW, "acme/nothing"),
        UsageEvent("no-model-id", user.id, "requests", 1, NOW, 2**31 - 1),
        UsageEvent("too-old", user.id, "requests", 1, start - timedelta(seconds=1)),
        UsageEvent("period-start", user.id, "requests", 1, start),
        UsageEvent("too-new", user.id, "requests", 1, NOW + timedelta(seconds=301)),
        UsageEvent("latest", user.id, "requests", 1, NOW + timedelta(seconds=300)),
    ]
    recorded = record_usage(batch, NOW)
    reasons = {refusal.event_id: refusal.reason for refusal in recorded.refused}
    assert recorded.accepted == 4 and recorded.duplicated == 0
    assert reasons == {
        "no-user": f"There is no user #{2**31 - 1}.",
        "no-model": "There is no model 'acme/nothing' (provider slug / model key).",
        "no-model-id": f"There is no model #{2**31 - 1}.",
        "too-old": f"occurred_at {(start - timedelta(seconds=1)).isoformat()} is before the user's open period, "
                   f"which started {start.isoformat()}; a closed period's usage can no longer be recorded.",
        "too-new": f"occurred_at {(NOW + timedelta(seconds=301)).isoformat()} is more than 300 seconds in the future.",
    }
    models = dict(db.session.execute(select(UsageRecord.event_id, UsageRecord.model_id)
                                     .where(UsageRecord.user_id == user.id)).all())
    assert models == {"ok-slug": model.id, "ok-id": model.id, "period-start": None, "latest": None}
    subscriptions = set(db.session.scalars(select(UsageRecord.subscription_id).where(UsageRecord.user_id == user.id)))
    assert subscriptions == {subscription.id}


def test_a_model_reference_is_the_provider_slug_and_the_whole_model_key_after_the_first_slash(db_session):
    user, _ = subscribed()
    acme, zeta = make_provider(slug="acme"), make_provider(slug="zeta")
    nested = make_ai_model(provider_id=acme.id, model_key="meta/llama-3")
    acme_chat = make_ai_model(provider_id=acme.id, model_key="chat-1")
    zeta_chat = make_ai_model(provider_id=zeta.id, model_key="chat-1")
    make_ai_model(provider_id=zeta.id, model_key="chat-2")
    batch = [UsageEvent(reference, user.id, "requests", 1, NOW, reference)
             for reference in ("acme/meta/llama-3", "acme/chat-1", "zeta/chat-1", "acme/chat-2")]
    recorded = record_usage(batch, NOW)
    assert [refusal.event_id for refusal in recorded.refused] == ["acme/chat-2"]
    models = dict(db.session.execute(select(UsageRecord.event_id, UsageRecord.model_id)
                                     .where(UsageRecord.user_id == user.id)).all())
    assert models == {"acme/meta/llama-3": nested.id, "acme/chat-1": acme_chat.id, "zeta/chat-1": zeta_chat.id}


def test_a_user_without_a_subscription_is_held_to_the_signup_plans_period(db_session):
    user = make_user(created_at=NOW - timedelta(days=45))
    period_start = user.created_at + timedelta(days=30)
    recorded = record_usage([UsageEvent("before", user.id, "requests", 1, period_start - timedelta(hours=1)),
                             UsageEvent("inside", user.id, "requests", 2, period_start + timedelta(hours=1))], NOW)
    assert recorded.accepted == 1 and [r.event_id for r in recorded.refused] == ["before"]


# A user on the signup plan has 30-day periods from sign-up: which one is open depends on the time.
SIGNED_UP = datetime(2021, 2, 6, 17, 30, tzinfo=timezone.utc)
THEN = datetime(2021, 3, 10, 12, tzinfo=timezone.utc)  # in the period begun 2021-03-08 17:30
THEN_PERIOD_START = datetime(2021, 3, 8, 17, 30, tzinfo=timezone.utc)


def test_record_usage_judges_each_event_by_the_period_open_at_the_time_given(db_session):
    user = make_user(created_at=SIGNED_UP)
    early = THEN_PERIOD_START - timedelta(microseconds=1)
    recorded = record_usage([UsageEvent("at-start", user.id, "requests", 1, THEN_PERIOD_START),
                             UsageEvent("before", user.id, "requests", 1, early)], THEN)
    assert (recorded.accepted, recorded.duplicated) == (1, 0)
    assert [(r.event_id, r.reason) for r in recorded.refused] == [
        ("before", f"occurred_at {early.isoformat()} is before the user's open period, which started "
                   "2021-03-08T17:30:00+00:00; a closed period's usage can no longer be recorded.")]
    only_refused = record_usage([UsageEvent("before-again", user.id, "requests", 1, early)], THEN)
    assert (only_refused.accepted, only_refused.duplicated, len(only_refused.refused)) == (0, 0, 1)


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


@pytest.mark.postgres_only  # SQLite takes the rows as they are; PostgreSQL takes one array per column
def test_on_postgresql_a_batch_is_one_insert_of_column_arrays_and_one_rollup_upsert(db_session, count_queries):
    user, _ = subscribed()
    batch = [*events(user, 300, "today"), *events(user, 300, "yesterday", at=NOW - timedelta(days=1))]
    with count_queries() as counter:
        recorded = record_usage(batch, NOW)
    writes = [statement for statement in counter.statements if statement.lstrip().upper().startswith("INSERT")]
    assert recorded.accepted == 600 and len(writes) == 2 and all("unnest" in statement for statement in writes)
    assert rollup_mismatches() == []


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


def test_a_job_is_billed_its_started_minutes_on_its_model_only_when_it_stops_running(db_session):
    from tests.factories import make_training_job
    from webapp.training.services import transition

    user, _ = subscribed({"training_minutes": 600})
    ran, unstarted, requeued = (make_training_job(user, status="running", base_model_id=make_ai_model().id)
                                for _ in range(3))
    ran.started_at = utcnow() - timedelta(minutes=5, seconds=2.5)  # a started sixth minute counts
    unstarted.started_at = None  # as a third-party tool could have written it: the minimum minute
    never_ran = make_training_job(user)
    transition(ran, "failed")
    transition(unstarted, "canceled")
    transition(requeued, "queued")  # its worker was lost: the next attempt bills the whole run
    transition(never_ran, "canceled")
    records = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == user.id).order_by(UsageRecord.id))
    assert [(record.event_id, record.metric, record.quantity, record.model_id, record.occurred_at)
            for record in records] == [
        (f"training-job-{ran.id}", "training_minutes", 6, ran.base_model_id, ran.finished_at),
        (f"training-job-{unstarted.id}", "training_minutes", 1, unstarted.base_model_id, unstarted.finished_at)]


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
    user, then = make_user(created_at=SIGNED_UP), THEN
    day = datetime(2021, 3, 8, tzinfo=timezone.utc)
    store(user, "input_tokens", (1, day - timedelta(minutes=1)), (2, day), (4, day + timedelta(hours=9)),
          (8, day + timedelta(hours=17, minutes=30)), (16, day + timedelta(hours=20)), (32, day + timedelta(days=1)),
          now=then)
    store(user, "requests", (64, day + timedelta(hours=1)), now=then)
    healthy = rollups()
    assert [(row[2], row[4]) for row in healthy if row[1] == day.date() and row[3] == "input_tokens"] == [
        (day, 2 + 4), (THEN_PERIOD_START, 8 + 16)]
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


def test_allowance_answer_of_a_user_on_the_signup_plan_is_for_the_period_open_at_the_time_given(app, db_session):
    make_plan(code=app.config["SIGNUP_PLAN"],
              quotas={"tokens": 100, "requests": 3, "overage": {"tokens": {"per": 1000, "cents": 2}}})
    user = make_user(created_at=SIGNED_UP)
    store(user, "requests", (3, THEN_PERIOD_START), (4, THEN_PERIOD_START - timedelta(seconds=1)), now=THEN)
    store(user, "output_tokens", (5, THEN), now=THEN)
    assert allowance_answer(user.id, THEN) == {
        "user_id": user.id, "period_start": "2021-03-08T17:30:00+00:00", "period_end": "2021-04-07T17:30:00+00:00",
        "quotas": {
            "tokens": {"metrics": ["input_tokens", "output_tokens"], "limit": 100, "used": 5, "remaining": 95,
                       "at_limit": "overage", "blocked": False, "overage_price": {"per": 1000, "cents": 2}},
            "requests": {"metrics": ["requests"], "limit": 3, "used": 3, "remaining": 0, "at_limit": "block",
                         "blocked": True, "overage_price": None},
            "training_minutes": {"metrics": ["training_minutes"], "limit": None, "used": 0, "remaining": None,
                                 "at_limit": "block", "blocked": False, "overage_price": None},
        },
        "blocked": {"input_tokens": False, "output_tokens": False, "requests": True},
    }


def test_daily_totals_sum_one_users_slices_per_day_and_metric_from_the_start_up_to_the_end(db_session):
    start = datetime(2026, 11, 28, 17, 30, tzinfo=timezone.utc)
    (user, _), (other, _) = subscribed(start=start), subscribed(start=start)
    end = datetime(2026, 11, 30, tzinfo=timezone.utc)
    store(user, "input_tokens", (1, start - timedelta(minutes=1)), (2, start), (4, start + timedelta(hours=2)),
          (8, start + timedelta(hours=7)), (16, end + timedelta(hours=5)))
    store(user, "requests", (32, start + timedelta(hours=7)))
    store(other, "input_tokens", (64, start + timedelta(hours=1)))
    assert daily_totals(user.id, start, end) == {
        (date(2026, 11, 28), "input_tokens"): 2 + 4, (date(2026, 11, 29), "input_tokens"): 8,
        (date(2026, 11, 29), "requests"): 32}
    assert list(db.session.execute(daily_totals_statement(user.id, start, end)).keys()) == ["day", "metric", "total"]


def test_verify_finds_records_without_a_rollup_and_a_rollup_without_records_but_not_zeros(db_session):
    user, _ = subscribed()
    store(user, "input_tokens", (1, NOW))
    store(user, "requests", (0, NOW))
    db.session.execute(delete(UsageRollup).where(UsageRollup.user_id == user.id))
    yesterday, before = NOW - timedelta(days=1), NOW - timedelta(days=2)
    for at, quantity in ((yesterday, 1), (before, 0)):
        db.session.add(UsageRollup(user_id=user.id, day=at.date(), starts_at=at, metric="output_tokens",
                                   quantity=quantity))
    db.session.flush()
    assert [(m.user_id, m.day, m.metric, m.rollup, m.raw) for m in rollup_mismatches()] == [
        (user.id, yesterday.date(), "output_tokens", 1, 0), (user.id, NOW.date(), "input_tokens", 0, 1)]


def test_create_token_audits_the_new_service_by_name_and_its_token_finds_it_while_active(db_session):
    service, token = create_token("gateway-us")
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "metering_token.create")).one()
    assert (audit.object_type, audit.object_id, audit.changes) == ("metering_tokens", service.id, {"name": "gateway-us"})
    assert service.token_hash == hash_token(token) and service_for_token(token) is service
    assert service_for_token("") is None and service_for_token(None) is None and service_for_token(token + "x") is None
    service.is_active = False
    assert service_for_token(token) is None


@pytest.fixture
def server_in_tokyo(monkeypatch):
    """The server's local time zone is nine hours ahead of UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_usage_times_are_utc_whatever_the_servers_time_zone(server_in_tokyo):
    evening = datetime(2026, 11, 28, 20, tzinfo=timezone.utc)
    assert slice_start(evening, ()) == datetime(2026, 11, 28, tzinfo=timezone.utc)
    (event,) = parse_batch({"events": [event_body(occurred_at="2026-11-29T05:00:00+09:00")]}, 1)
    assert event.occurred_at == evening and event.occurred_at.utcoffset() == timedelta(0)


def event_body(**fields) -> dict:
    """One event of the metering API's body, valid unless ``fields`` say otherwise."""
    return {"id": "e-1", "user_id": 1, "model": 1, "metric": "requests", "quantity": 0,
            "occurred_at": "2026-12-01T09:30:00Z", **fields}


LONGEST_REFERENCE = "p" * 120 + "/" + "m" * 120
LONGEST_TIME = "2026-12-01T18:30:00.12345678901234+09:00"  # 40 characters


@pytest.mark.parametrize("fields, parsed", [
    ({}, {}),
    ({"id": "x" * 64}, {"event_id": "x" * 64}),
    ({"user_id": 2**31 - 1}, {"user_id": 2**31 - 1}),
    ({"model": 2**31 - 1}, {"model": 2**31 - 1}),
    ({"model": "a/b"}, {"model": "a/b"}),
    ({"model": LONGEST_REFERENCE}, {"model": LONGEST_REFERENCE}),
    ({"metric": "input_tokens", "quantity": 2**63 - 1}, {"metric": "input_tokens", "quantity": 2**63 - 1}),
    ({"occurred_at": LONGEST_TIME}, {"occurred_at": datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=timezone.utc)}),
])
def test_parse_batch_takes_each_field_up_to_the_edges_of_its_range(fields, parsed):
    plain = {"event_id": "e-1", "user_id": 1, "metric": "requests", "quantity": 0,
             "occurred_at": datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc), "model": 1}
    assert parse_batch({"events": [event_body(**fields), event_body(id="e-2")]}, 2) == [
        UsageEvent(**{**plain, **parsed}), UsageEvent(**{**plain, "event_id": "e-2"})]


ID_RULE = "events[1].id must be a non-blank string of at most 64 characters."
MODEL_RULE = 'events[1].model must be a model id, or a provider slug and model key such as "openai/gpt-4o-mini".'
USER_RULE = "events[1].user_id must be a user id (a whole number from 1)."
QUANTITY_RULE = f"events[1].quantity must be a whole number from 0 to {2**63 - 1}."
TIME_RULE = 'events[1].occurred_at must be an ISO 8601 time with its UTC offset, e.g. "2026-12-01T09:30:00Z".'


@pytest.mark.parametrize("fields, detail", [
    ({"cost": 3, "tip": 1}, "events[1] has unknown fields: cost, tip."),
    ({"z" * 400: 1}, "events[1] has unknown fields: " + "z" * 300 + "."),
    ({"id": "x" * 65}, ID_RULE), ({"id": " "}, ID_RULE), ({"id": 7}, ID_RULE),
    ({"metric": "training_minutes"}, "events[1].metric must be one of input_tokens, output_tokens, requests."),
    ({"model": 0}, MODEL_RULE), ({"model": 2**31}, MODEL_RULE), ({"model": True}, MODEL_RULE),
    ({"model": "a/"}, MODEL_RULE), ({"model": "gpt"}, MODEL_RULE), ({"model": LONGEST_REFERENCE + "m"}, MODEL_RULE),
    ({"user_id": 0}, USER_RULE), ({"user_id": 2**31}, USER_RULE),
    ({"quantity": -1}, QUANTITY_RULE), ({"quantity": 2**63}, QUANTITY_RULE), ({"quantity": False}, QUANTITY_RULE),
    ({"occurred_at": LONGEST_TIME[:20] + "1" + LONGEST_TIME[20:]}, TIME_RULE), ({"occurred_at": 1764581400}, TIME_RULE),
    ({"occurred_at": "2026-12-01T09:30:00"}, "events[1].occurred_at must carry its UTC offset (Z or +hh:mm)."),
])
def test_parse_batch_refuses_the_whole_batch_naming_the_bad_event_and_field(fields, detail):
    with pytest.raises(InvalidBatch) as refused:
        parse_batch({"events": [event_body(id="e-0"), event_body(**fields)]}, 2)
    assert str(refused.value) == detail


@pytest.mark.parametrize("body, detail", [
    ([], 'The body must be {"events": [...]}, with no other field.'),
    ({"events": [], "extra": 1}, 'The body must be {"events": [...]}, with no other field.'),
    ({"events": {}}, "events must be a non-empty list."),
    ({"events": []}, "events must be a non-empty list."),
    ({"events": [event_body(), "x"]}, "events[1] must be an object."),
    ({"events": [event_body()] * 3}, "events holds 3 events; at most 2 fit in one batch."),
])
def test_parse_batch_refuses_a_body_that_is_not_a_short_list_of_events(body, detail):
    with pytest.raises(InvalidBatch) as refused:
        parse_batch(body, 2)
    assert str(refused.value) == detail
