"""The home page's summary without HTTP: which jobs and which minion, in which order, in one query."""
from datetime import timedelta

from tests.factories import (
    make_dataset, make_minion, make_plan, make_provider, make_provider_config, make_subscription, make_training_job,
    make_user,
)
from webapp.billing.models import UsageAlert
from webapp.db import utcnow
from webapp.extensions import db
from webapp.home.services import RUNNING_JOBS_SHOWN, Step, summary


def test_running_jobs_are_the_users_active_ones_newest_queued_first_at_most_five(db_session):
    user = make_user()
    jobs = []
    for hours_ago in range(7):
        job = make_training_job(user, status="running" if hours_ago % 2 else "queued")
        job.queued_at = utcnow() - timedelta(hours=hours_ago)
        jobs.append(job)
    make_training_job(user, status="succeeded")
    make_training_job(user, status="failed")
    make_training_job(make_user(), status="running")
    db_session.flush()
    assert RUNNING_JOBS_SHOWN == 5
    assert [job["id"] for job in summary(user, None).jobs] == [job.id for job in jobs[:5]]


def test_best_minion_is_the_highest_xp_one_still_in_service_the_older_on_a_tie(db_session):
    user = make_user()
    assert summary(user, None).minion is None
    make_minion(user, xp=5000, status="retired")
    make_minion(make_user(), xp=9000)
    make_minion(user, xp=10)
    older, _newer = make_minion(user, xp=400), make_minion(user, xp=400)
    assert summary(user, None).minion["id"] == older.id


def test_the_summary_is_one_query_with_the_meters_use(db_session, count_queries):
    from tests.factories import make_usage
    from webapp.billing.services import live_subscription

    user = make_user()
    make_subscription(user, make_plan(quotas={"tokens": 1000, "minions": 3, "training_jobs": 5}))
    make_usage(user, "input_tokens", 300)
    make_minion(user)
    make_training_job(user, status="running")
    subscription = live_subscription(user)
    with count_queries() as counter:
        figures = summary(user, subscription)
    assert counter.count == 1
    assert figures.usage == {"tokens": 300, "minions": 1, "training_jobs": 1}
    assert len(figures.jobs) == 1 and figures.minion is not None and figures.usage_alerts == []


def shown(rows: list[dict]) -> list[dict]:
    """JSON rows without their ``position`` (the order they came in)."""
    return [{key: value for key, value in row.items() if key != "position"} for row in rows]


def alert(user, quota_key: str, threshold: int, dismissed: bool = False, ended: bool = False) -> None:
    """A crossing of ``threshold`` percent of ``quota_key`` in the running period (or one that ended)."""
    now = utcnow()
    end = now - timedelta(days=1) if ended else now + timedelta(days=20)
    db.session.add(UsageAlert(user_id=user.id, period_start=end - timedelta(days=30), period_end=end,
                              quota_key=quota_key, threshold=threshold, used=threshold * 10, quota_limit=1000,
                              dismissed_at=now if dismissed else None))


STEPS = [("Confirm your email address", "accounts.account"), ("Add a provider key", "providers.provider_list"),
         ("Create a minion", "minions.minion_list"), ("Add a dataset", "datasets.dataset_upload"),
         ("Start training", "training.job_list")]


def test_the_summary_shows_the_jobs_and_minions_columns_every_step_done_and_the_highest_alert_per_quota(db_session):
    user = make_user()
    subscription = make_subscription(user, make_plan(quotas={"tokens": 1000, "requests": 10}))
    make_provider_config(user, make_provider(), api_key="sk-test-key")
    make_dataset(user)
    queued_at = utcnow() - timedelta(minutes=5)
    first = make_training_job(user, status="running", name="Nightly", progress=0.25, queued_at=queued_at)
    second = make_training_job(user, status="queued", name="Weekly", queued_at=queued_at)
    minion = make_minion(user, xp=120, name="Kevin")
    for quota_key, threshold in (("tokens", 50), ("tokens", 80), ("requests", 50)):
        alert(user, quota_key, threshold)
    alert(user, "requests", 100, dismissed=True)
    alert(user, "tokens", 100, ended=True)
    alert(make_user(), "tokens", 100)
    db.session.flush()

    figures = summary(user, subscription)

    assert shown(figures.jobs) == [
        {"id": second.id, "name": "Weekly", "status": "queued", "progress": 0.0},
        {"id": first.id, "name": "Nightly", "status": "running", "progress": 0.25},
    ], "queued at the same time: the newer job first"
    assert shown([figures.minion]) == [{
        "id": minion.id, "name": "Kevin", "level": minion.level, "xp": 120, "status": minion.status}]
    assert figures.steps == [Step(label, endpoint, True) for label, endpoint in STEPS]
    assert shown(figures.usage_alerts) == [
        {"quota_key": "requests", "threshold": 50, "used": 500, "quota_limit": 1000},
        {"quota_key": "tokens", "threshold": 80, "used": 800, "quota_limit": 1000},
    ]
    assert figures.usage == {"tokens": 0, "requests": 0}, "an unused meter reads 0"


def test_a_new_users_steps_are_not_done_by_other_users_rows_or_a_provider_without_a_key(db_session):
    user = make_user(email_verified_at=None)
    provider = make_provider()
    make_provider_config(user, provider)
    other = make_user()
    make_provider_config(other, provider, api_key="sk-test-key")
    make_dataset(other)
    make_training_job(other, status="running", minion=make_minion(other, xp=50))

    figures = summary(user, None)

    assert figures.steps == [Step(label, endpoint, False) for label, endpoint in STEPS]
    assert (figures.jobs, figures.minion, figures.usage_alerts, figures.usage) == ([], None, [], {})


def test_a_tie_goes_to_the_older_minion_even_when_it_changed_last(db_session):
    # PostgreSQL writes an updated row anew at the end of the table: only the id orders the tie then.
    user = make_user()
    older, _newer = make_minion(user, xp=400), make_minion(user, xp=400)
    older.name = "Renamed"
    db_session.flush()
    assert summary(user, None).minion["id"] == older.id
