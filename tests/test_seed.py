"""The demo and scale seeds: every table filled, nothing twice, XP always the sum of its events."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from webapp.db import utcnow
from webapp.extensions import db

# Alembic writes migration_log, sign-ins write sessions; the demo's one job runner is optional.
NOT_SEEDED = {"migration_log", "sessions", "job_runners"}
SCALE_SIZES = {"users": 2000, "usage": 5000, "minions": 1000, "jobs": 500, "events": 1000}


@pytest.fixture
def demo(app, db_session):
    from webapp.seed.demo import seed_demo

    return seed_demo(app.config["DEMO_PASSWORD"])


def row_counts() -> dict[str, int]:
    from webapp.seed import row_counts

    return row_counts()


def minions_whose_xp_is_not_their_events_sum() -> list[str]:
    from webapp.minions.models import Minion, MinionXpEvent

    events_sum = (
        sa.select(sa.func.coalesce(sa.func.sum(MinionXpEvent.delta), 0))
        .where(MinionXpEvent.minion_id == Minion.id)
        .scalar_subquery()
    )
    return list(db.session.scalars(sa.select(Minion.name).where(Minion.xp != events_sum)))


def window_gains_unlike_the_ledger() -> list[tuple]:
    """(period, minion id, rollup, ledger) wherever this week's or month's rollup differs from the XP events."""
    from webapp.minions.models import MinionXpEvent, MinionXpGain
    from webapp.minions.services import window_start

    differences = []
    for period in ("week", "month"):
        start = window_start(period)
        ledger = dict(db.session.execute(
            sa.select(MinionXpEvent.minion_id, sa.func.sum(MinionXpEvent.delta))
            .where(MinionXpEvent.created_at >= start).group_by(MinionXpEvent.minion_id)
        ).all())
        rollup = dict(db.session.execute(
            sa.select(MinionXpGain.minion_id, MinionXpGain.gained).filter_by(period=period, period_start=start)
        ).all())
        differences += [(period, minion_id, rollup.get(minion_id), ledger.get(minion_id))
                        for minion_id in set(ledger) | set(rollup) if rollup.get(minion_id) != ledger.get(minion_id)]
    return differences


def test_demo_fills_every_table_and_a_second_run_adds_nothing(app, demo):
    from webapp.seed.demo import seed_demo

    counts = row_counts()
    assert set(counts) == set(db.metadata.tables)
    for table, count in counts.items():
        if table not in NOT_SEEDED:
            assert count > 0, f"the demo left {table} empty"
    assert counts["sessions"] == 0

    created_again = seed_demo(app.config["DEMO_PASSWORD"])

    assert not any(created_again.values()), created_again
    assert row_counts() == counts


def test_demo_minion_xp_is_the_sum_of_its_events(demo):
    from webapp.minions.models import Minion
    from webapp.minions.xp import level_for_xp

    minions = db.session.scalars(sa.select(Minion)).all()
    assert len(minions) >= 20
    assert minions_whose_xp_is_not_their_events_sum() == []
    assert window_gains_unlike_the_ledger() == []
    assert all(minion.level == level_for_xp(minion.xp) for minion in minions)


def test_demo_accounts_roles_and_training_history(app, demo):
    from webapp.accounts.models import User
    from webapp.accounts.passwords import verify_password
    from webapp.accounts.permissions import PERMISSIONS, ROLE_PERMISSIONS
    from webapp.providers.models import ModelVersion
    from webapp.artifacts import artifact_exists
    from webapp.training.models import TrainingJob

    users = {u.email: u for u in db.session.scalars(sa.select(User).where(User.email.like("%@demo.test")))}
    admin, support, ada, grace = (users[f"{n}@demo.test"] for n in ("admin", "support", "ada", "grace"))
    assert {p.code for p in admin.roles[0].permissions} == set(PERMISSIONS)
    assert {p.code for p in support.roles[0].permissions} == set(ROLE_PERMISSIONS["support"])
    assert verify_password(ada.password_hash, app.config["DEMO_PASSWORD"])
    assert ada.current_subscription.plan.code == "pro" and grace.current_subscription.plan.code == "team"

    for user in (ada, grace):
        jobs = db.session.scalars(sa.select(TrainingJob).where(TrainingJob.user_id == user.id)).all()
        assert {job.status for job in jobs} >= {"succeeded", "failed", "canceled"}
        assert {job.job_type for job in jobs} == {"internal", "external"}
        assert all(job.datasets for job in jobs)
    # Seeded jobs are history, but one: Ada's queued internal job on a real dataset, for the first start's worker.
    active = db.session.scalars(sa.select(TrainingJob).where(TrainingJob.status.in_(("queued", "running")))).all()
    assert [(job.user_id, job.status, job.job_type) for job in active] == [(ada.id, "queued", "internal")]
    assert {link.split for link in active[0].datasets} == {"train", "validation"}
    assert all(artifact_exists(link.dataset.uri) for link in active[0].datasets)
    retried = db.session.scalars(sa.select(TrainingJob).where(TrainingJob.retry_of_id.is_not(None))).first()
    assert retried is not None

    newest = db.session.scalars(
        sa.select(ModelVersion).where(ModelVersion.stage == "staging", ModelVersion.created_by_id == ada.id)
    ).one()
    lineage = [newest.version, newest.parent_version.version, newest.parent_version.parent_version.version]
    assert lineage == ["v3", "v2", "v1"]
    assert newest.training_job.output_model_version_id == newest.id


def test_scale_needs_the_demo_reference_data(db_session):
    from webapp.seed import SeedError
    from webapp.seed.scale import seed_scale

    with pytest.raises(SeedError, match="flask seed demo"):
        seed_scale(**SCALE_SIZES)


# Runs on both backends: COPY on PostgreSQL, batched executemany on SQLite.
def test_scale_loads_the_planned_rows_consistently(demo):
    from webapp.accounts.models import User
    from webapp.billing.models import UsageRecord
    from webapp.seed import SeedError
    from webapp.metering.services import rollup_mismatches
    from webapp.seed.scale import planned_rows, seed_scale

    before = row_counts()

    summary = seed_scale(**SCALE_SIZES, batch=700)

    planned = planned_rows(**SCALE_SIZES)
    assert {table: summary["rows"][table] for table in planned} == planned
    assert set(summary["rows"]) - set(planned) == {"minion_xp_gains", "usage_rollups"}
    after = row_counts()
    assert {table: after[table] - before[table] for table in summary["rows"]} == summary["rows"]
    assert summary["total_rows"] == sum(summary["rows"].values()) and summary["seconds"] > 0
    assert minions_whose_xp_is_not_their_events_sum() == []
    assert window_gains_unlike_the_ledger() == []
    assert rollup_mismatches() == [], "the usage rollup holds the scale records' sums"
    subscribed = db.session.scalar(
        sa.select(sa.func.count()).where(User.email.like("%@scale.test"), User.current_subscription_id.is_not(None))
    )
    assert subscribed == summary["rows"]["user_subscriptions"]

    # The app's own inserts carry on after the ids the load assigned.
    last_id = db.session.scalar(sa.select(sa.func.max(UsageRecord.id)))
    record = UsageRecord(user_id=db.session.scalar(sa.select(sa.func.min(User.id))), metric="requests", quantity=1,
                         occurred_at=utcnow(), event_id="after-the-scale-load")
    db.session.add(record)
    db.session.flush()
    assert record.id == last_id + 1

    with pytest.raises(SeedError, match="already loaded"):
        seed_scale(users=1, usage=0, minions=0, jobs=0, events=0)
