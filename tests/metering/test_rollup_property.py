"""Property: after any random batches (repeats, refusals, several users and days), the rollup equals the raw sums."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from tests.factories import make_plan, make_subscription, make_user
from webapp import quotas
from webapp.billing.models import UsageRecord
from webapp.extensions import db
from webapp.metering.models import UsageRollup
from webapp.metering.services import UsageEvent, record_usage, rollup_mismatches

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
PERIOD_START = NOW - timedelta(days=2, hours=7)  # 2026-11-29 08:00: the period starts inside a day

event_strategy = st.tuples(
    st.integers(0, 39),                                 # event id (small: repeats across and inside batches)
    st.integers(0, 2),                                  # which user
    st.sampled_from(["input_tokens", "output_tokens", "requests"]),
    st.integers(0, 10**6),                              # quantity
    st.integers(-3 * 24 * 60, 10),                      # minutes from NOW: before the period too, and the future
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(event_strategy, max_size=30), min_size=1, max_size=5))
def test_the_rollup_equals_the_raw_sums_after_random_batches(db_session, batches):
    db.session.execute(delete(UsageRollup))
    db.session.execute(delete(UsageRecord))
    users = [make_user() for _ in range(3)]
    plan = make_plan(quotas={"tokens": 10**9, "requests": 10**9})
    make_subscription(users[0], plan, current_period_start=PERIOD_START)
    make_subscription(users[1], plan, current_period_start=PERIOD_START - timedelta(hours=30))
    for batch in batches:
        record_usage([UsageEvent(f"p-{event_id}", users[user].id, metric, quantity, NOW + timedelta(minutes=minutes))
                      for event_id, user, metric, quantity, minutes in batch], NOW)

    assert rollup_mismatches() == []
    for user in users:
        terms = quotas.allowance(user, NOW)
        raw = dict(db.session.execute(
            select(UsageRecord.metric, func.sum(UsageRecord.quantity))
            .where(UsageRecord.user_id == user.id, UsageRecord.occurred_at >= terms.period_start,
                   UsageRecord.occurred_at < terms.period_end)
            .group_by(UsageRecord.metric)).all())
        assert quotas.period_usage(user.id, terms) == {metric: int(total) for metric, total in raw.items()}
