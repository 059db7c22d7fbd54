"""The home page's summary without HTTP: which jobs and which minion, in which order, in one query."""
from datetime import timedelta

from tests.factories import make_minion, make_training_job, make_user
from webapp.db import utcnow
from webapp.home.services import RUNNING_JOBS_SHOWN, summary


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
    from tests.factories import make_plan, make_subscription, make_usage
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
