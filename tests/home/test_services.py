"""The home page's summaries without HTTP: which jobs and which minion, in which order."""
from datetime import timedelta

from tests.factories import make_minion, make_training_job, make_user
from webapp.db import utcnow
from webapp.home.services import RUNNING_JOBS_SHOWN, best_minion, running_jobs


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
    assert running_jobs(user) == jobs[:5]


def test_best_minion_is_the_highest_xp_one_still_in_service_the_older_on_a_tie(db_session):
    user = make_user()
    assert best_minion(user) is None
    make_minion(user, xp=5000, status="retired")
    make_minion(make_user(), xp=9000)
    make_minion(user, xp=10)
    older, _newer = make_minion(user, xp=400), make_minion(user, xp=400)
    assert best_minion(user) is older
