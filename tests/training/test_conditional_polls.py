"""Polls of a job's row, a job's live panel and the workers board: 304 while nothing changed, for one read."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import login
from tests.factories import make_training_job, make_user
from webapp.db import utcnow
from webapp.extensions import db
from webapp.training.models import TrainingJobEvent, TrainingWorker
from webapp.training.views import workers_state
from webapp.training.workers import worker_heartbeat, worker_started

HTMX = {"HX-Request": "true"}
# Long ago enough that the durations shown ("2 d 0 h") do not turn over while a test runs.
LONG_AGO = timedelta(days=2, minutes=30)


@pytest.fixture
def ada(client, db_session):
    user = make_user()
    login(client, user)
    return user


def running_job(owner):
    job = make_training_job(owner, status="running")
    job.started_at = utcnow() - LONG_AGO
    db.session.flush()
    return job


def poll(client, url: str, etag: str | None = None):
    return client.get(url, headers={**HTMX, **({"If-None-Match": etag} if etag else {})})


def assert_not_modified(client, url: str, etag: str, count_queries) -> None:
    """The poll with the tag is a 304 without a body, for the session's read and the state's one read."""
    with count_queries() as counter:
        response = poll(client, url, etag)
    assert response.status_code == 304 and response.get_data() == b""
    assert response.headers["ETag"] == etag and response.headers["Cache-Control"] == "private, no-cache"
    assert counter.count == 2, counter.statements


@pytest.mark.parametrize("path", ["/row", ""])
def test_a_job_poll_is_304_until_the_job_or_its_events_change(client, db_session, ada, count_queries, path):
    job = running_job(ada)
    url = f"/jobs/{job.id}{path}" + ("?after=0" if not path else "")
    first = poll(client, url)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
    etag = first.headers["ETag"]
    assert_not_modified(client, url, etag, count_queries)

    db.session.add(TrainingJobEvent(training_job_id=job.id, message="Step 1", progress=0.1))
    db.session.flush()
    after_event = poll(client, url, etag)
    assert after_event.status_code == 200 and after_event.headers["ETag"] != etag
    if not path:
        assert "Step 1" in after_event.get_data(as_text=True)

    job.status, job.progress, job.finished_at = "succeeded", 1.0, utcnow()
    db.session.flush()
    finished = poll(client, url, after_event.headers["ETag"])
    assert finished.status_code == 200 and "badge-succeeded" in finished.get_data(as_text=True)
    assert finished.headers["ETag"] not in (etag, after_event.headers["ETag"])


def test_a_job_s_tag_moves_with_the_names_it_shows_and_the_viewer_s_time_zone(client, db_session, ada):
    job = running_job(ada)
    url = f"/jobs/{job.id}/row"
    etag = poll(client, url).headers["ETag"]
    job.base_model.name = "Renamed model"
    db.session.flush()
    renamed = poll(client, url, etag)
    assert renamed.status_code == 200 and "Renamed model" in renamed.get_data(as_text=True)
    db.session.refresh(ada)
    ada.time_zone = "Europe/Paris"
    db.session.flush()
    assert poll(client, url, renamed.headers["ETag"]).status_code == 200


def test_the_duration_of_a_running_job_is_part_of_its_state(client, db_session, ada):
    job = running_job(ada)
    url = f"/jobs/{job.id}/row"
    etag = poll(client, url).headers["ETag"]
    # The same job an hour later, as far as the row's "Duration" cell can tell.
    job.started_at = job.started_at - timedelta(hours=1)
    db.session.flush()
    assert poll(client, url, etag).status_code == 200


def test_a_tag_is_never_a_way_past_authorization(app, client, db_session, ada):
    job = running_job(ada)
    etag = poll(client, f"/jobs/{job.id}/row").headers["ETag"]
    someone_else = app.test_client()
    login(someone_else, make_user())
    assert poll(someone_else, f"/jobs/{job.id}/row", etag).status_code == 404
    anonymous = poll(app.test_client(), f"/jobs/{job.id}/row", etag)
    assert anonymous.status_code != 304 and "ETag" not in anonymous.headers


def test_another_viewer_never_matches_the_owner_s_tag(app, client, db_session, ada):
    job = running_job(ada)
    etag = poll(client, f"/jobs/{job.id}/row").headers["ETag"]
    staff = app.test_client()
    login(staff, make_user(role="admin"))
    answer = poll(staff, f"/jobs/{job.id}/row", etag)
    assert answer.status_code == 200 and answer.headers["ETag"] != etag


def test_a_full_page_is_rendered_without_a_tag(client, db_session, ada):
    job = running_job(ada)
    response = client.get(f"/jobs/{job.id}")
    assert response.status_code == 200 and "ETag" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"


def test_the_workers_board_is_304_until_a_heartbeat(client, db_session, count_queries):
    login(client, make_user(role="admin"))
    worker_started("celery@poll", "poll", 1, ["celery"])
    worker = db.session.query(TrainingWorker).filter_by(name="celery@poll").one()
    worker.heartbeat_at = utcnow() - timedelta(seconds=5)
    db.session.flush()
    first = poll(client, "/jobs/workers")
    assert first.status_code == 200 and "just now" in first.get_data(as_text=True)
    etag = first.headers["ETag"]
    assert_not_modified(client, "/jobs/workers", etag, count_queries)

    worker_heartbeat("celery@poll")
    assert poll(client, "/jobs/workers", etag).status_code == 200


def test_the_workers_board_changes_when_a_job_is_queued_or_runs(client, db_session):
    staff = make_user(role="admin")
    login(client, staff)
    etag = poll(client, "/jobs/workers").headers["ETag"]  # no worker at all: the stamps alone
    job = make_training_job(staff, status="queued", queued_at=utcnow() - LONG_AGO)
    queued = poll(client, "/jobs/workers", etag)
    assert queued.status_code == 200 and f"#{job.id}" in queued.get_data(as_text=True)
    job.status, job.started_at = "running", utcnow()
    db.session.flush()
    assert poll(client, "/jobs/workers", queued.headers["ETag"]).status_code == 200


def test_the_workers_board_is_still_staff_only_with_a_tag(app, client, db_session):
    login(client, make_user(role="admin"))
    etag = poll(client, "/jobs/workers").headers["ETag"]
    user = app.test_client()
    login(user, make_user())
    assert poll(user, "/jobs/workers", etag).status_code == 403


def test_the_workers_board_state_holds_each_worker_s_state_and_the_oldest_wait(db_session):
    assert workers_state()[-2:] == [[], None]  # no worker, nothing queued
    for name in ("celery@online", "celery@stale"):
        worker_started(name, "host", 1, ["celery"])
    online, stale = (db.session.query(TrainingWorker).filter_by(name=name).one()
                     for name in ("celery@online", "celery@stale"))
    stale.heartbeat_at = utcnow() - timedelta(minutes=5, seconds=30)
    make_training_job(make_user(), "queued", queued_at=utcnow() - timedelta(minutes=3, seconds=10))
    db.session.flush()
    *rows, texts, oldest_wait = workers_state()
    by_worker = dict(zip((row.id for row in rows), texts))
    assert by_worker == {online.id: (("online", online.started_at), "just now"),
                         stale.id: (("stale", stale.heartbeat_at), "5 min ago")}
    assert oldest_wait == "3 min"
