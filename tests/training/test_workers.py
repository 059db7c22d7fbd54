"""The worker registry (written by Celery's signals in a worker), the staff workers page, and the
"waiting for a worker" note on a queued job that no worker took in time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from celery import signals

from tests.conftest import login
from tests.factories import make_training_job, make_user
from webapp.db import utcnow
from webapp.extensions import db
from webapp.training.models import TrainingWorker
from webapp.training.services import transition
from webapp.training import workers
from webapp.training.workers import (
    Heartbeats, board_state, queue_depths, worker_heartbeat, worker_rows, worker_started, worker_state,
    worker_stopped,
)

STALE = timedelta(seconds=90)


@pytest.fixture
def quiet_heartbeats(app):
    """The registry's heartbeat thread waits an hour, so it never shares the test's connection."""
    saved = app.config["WORKER_HEARTBEAT_SECONDS"]
    app.config["WORKER_HEARTBEAT_SECONDS"] = 3600
    yield
    app.config["WORKER_HEARTBEAT_SECONDS"] = saved


class WorkerNode:
    def __init__(self, app, hostname: str) -> None:
        self.app, self.hostname = app, hostname


def registered(name: str, heard_ago: timedelta = timedelta(0), stopped: bool = False) -> TrainingWorker:
    worker_started(name, "host-" + name.split("@")[-1], 4242, ["celery"])
    when = utcnow() - heard_ago
    worker = db.session.query(TrainingWorker).filter_by(name=name).one()
    worker.heartbeat_at, worker.started_at = when, when - timedelta(hours=1)
    worker.stopped_at = when if stopped else None
    db.session.flush()
    return worker


def test_a_worker_keeps_its_row_through_celerys_signals(app, db_session, quiet_heartbeats):
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()  # as a worker does on start: the task modules, and the registry's signals
    node = WorkerNode(celery, "celery@signals-test")  # what Celery sends as the consumer and the worker
    signals.worker_ready.send(sender=node)
    worker = db.session.query(TrainingWorker).filter_by(name="celery@signals-test").one()
    assert worker.queues == [app.config["CELERY_QUEUE"]] and worker.pid and worker.stopped_at is None

    signals.worker_shutdown.send(sender=node)

    db.session.expire_all()
    assert db.session.get(TrainingWorker, worker.id).stopped_at is not None


def test_a_worker_counts_the_jobs_that_end_while_it_holds_them(app, db_session):
    worker = registered("celery@counting")
    owner = make_user()
    held = [make_training_job(owner, status="running", worker_name=worker.name) for _ in range(4)]
    elsewhere = make_training_job(owner, status="running", worker_name="celery@other")
    transition(held[0], "succeeded")
    transition(held[1], "failed", "Worker lost")
    transition(held[2], "canceled")
    transition(elsewhere, "succeeded")
    held[3].progress = 0.5  # still running: not counted
    db.session.flush()

    db.session.refresh(worker)
    assert (worker.processed, worker.failed) == (3, 1)


def test_states_come_from_heartbeats_and_running_jobs_from_the_lease(app, db_session):
    online = registered("celery@a")
    stale = registered("celery@b", heard_ago=timedelta(minutes=5))
    registered("celery@c", heard_ago=timedelta(hours=2), stopped=True)
    job = make_training_job(make_user(), status="running", worker_name="celery@a")
    make_training_job(make_user(), status="succeeded", worker_name="celery@a")

    rows = {row.worker.name: row for row in worker_rows(utcnow(), STALE)}

    assert rows["celery@a"].state == "online" and rows["celery@a"].since == online.started_at
    assert [j.id for j in rows["celery@a"].running_jobs] == [job.id]
    assert rows["celery@b"].state == "stale" and rows["celery@b"].since == stale.heartbeat_at
    assert rows["celery@c"].state == "stopped"
    # A stale worker that beats again is online; a restart keeps its counts.
    worker_heartbeat("celery@b")
    worker_started("celery@b", "host-b", 99, ["celery"])
    db.session.expire_all()
    row = {row.worker.name: row for row in worker_rows(utcnow(), STALE)}["celery@b"]
    assert row.state == "online" and row.worker.pid == 99
    worker_stopped("celery@b")
    db.session.expire_all()
    assert {row.worker.name: row for row in worker_rows(utcnow(), STALE)}["celery@b"].state == "stopped"


def test_a_worker_s_state_and_since_at_the_lease_s_edge():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    started, edge = now - timedelta(hours=1), now - STALE
    assert worker_state(TrainingWorker(started_at=started, heartbeat_at=edge), now, STALE) == ("online", started)
    late = edge - timedelta(seconds=1)
    assert worker_state(TrainingWorker(started_at=started, heartbeat_at=late), now, STALE) == ("stale", late)
    stopped = TrainingWorker(started_at=started, heartbeat_at=now, stopped_at=now - timedelta(minutes=2))
    assert worker_state(stopped, now, STALE) == ("stopped", now - timedelta(minutes=2))


def test_a_heartbeat_revives_only_its_own_stopped_worker(app, db_session):
    beating = registered("celery@revived", heard_ago=timedelta(hours=2), stopped=True)
    other = registered("celery@asleep", heard_ago=timedelta(hours=2), stopped=True)
    before = utcnow()
    worker_heartbeat("celery@revived")
    db.session.expire_all()
    assert beating.stopped_at is None and beating.heartbeat_at >= before
    assert other.stopped_at is not None and other.heartbeat_at < before


def test_the_heartbeat_thread_writes_its_worker_s_beat_each_interval_until_stopped(app, monkeypatch):
    beats = Heartbeats(app, "celery@thread", 0.01)
    writes = []

    def write(*args):
        writes.append(args)
        if len(writes) == 2:
            beats.stopped.set()

    monkeypatch.setattr(workers, "in_transaction", write)  # the thread never touches the test's connection
    beats.thread.start()
    beats.thread.join(timeout=5)
    assert not beats.thread.is_alive()
    assert writes == [(app, worker_heartbeat, "celery@thread")] * 2
    assert (beats.name, beats.interval, beats.thread.daemon) == ("celery@thread", 0.01, True)


def test_queue_depth_is_asked_of_the_broker(app, db_session):
    celery = app.extensions["celery"]
    before = {queue.name: queue.messages for queue in queue_depths(celery)[0]}
    celery.send_task("webapp.training.tasks.run_training_job", args=[0])
    after, error = queue_depths(celery)
    assert error is None
    name = app.config["CELERY_QUEUE"]
    assert {queue.name: queue.messages for queue in after} == {name: before[name] + 1}


def test_the_workers_page_shows_workers_queues_and_the_oldest_queued_job(app, client, count_queries):
    admin = make_user("admin")
    registered("celery@alpha")
    registered("celery@beta", heard_ago=timedelta(minutes=10))
    running = make_training_job(make_user(), status="running", worker_name="celery@alpha", name="Tune alpha")
    oldest = make_training_job(make_user(), status="queued", name="Waiting long",
                               queued_at=utcnow() - timedelta(hours=3))
    make_training_job(make_user(), status="queued", name="Waiting less")
    login(client, admin)

    page = client.get("/jobs/workers")

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "celery@alpha" in html and "celery@beta" in html
    assert "no heartbeat since" in html  # beta is stale
    assert f"#{running.id} Tune alpha" in html
    assert f"#{oldest.id} Waiting long" in html and "3 h 0 min" in html
    assert f"Queue <code>{app.config['CELERY_QUEUE']}</code>" in html

    fragment = client.get("/jobs/workers", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="worker-board"') and "<html" not in body
    assert 'hx-trigger="every 5s"' in body

    # The page reads the same number of rows whatever the number of workers.
    with count_queries() as few:
        client.get("/jobs/workers", headers={"HX-Request": "true"})
    for n in range(6):
        registered(f"celery@more-{n}")
        make_training_job(make_user(), status="running", worker_name=f"celery@more-{n}")
    with count_queries() as many:
        client.get("/jobs/workers", headers={"HX-Request": "true"})
    assert many.count == few.count


def test_the_workers_page_says_when_no_worker_ever_started(app, client):
    login(client, make_user("admin"))
    assert "No worker has started yet" in client.get("/jobs/workers").get_data(as_text=True)


def test_a_queued_job_waiting_past_the_sweepers_time_says_so(app, client):
    owner = make_user()
    timeout = app.config["JOB_DISPATCH_TIMEOUT_SECONDS"]
    late = make_training_job(owner, status="queued", dispatched_at=utcnow() - timedelta(seconds=timeout + 60))
    fresh = make_training_job(owner, status="queued", dispatched_at=utcnow())
    login(client, owner)

    assert "Waiting for a worker since" in client.get(f"/jobs/{late.id}").get_data(as_text=True)
    # The poll of the live panel says it too, and the owner (no staff permission) gets no staff link.
    polled = client.get(f"/jobs/{late.id}", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "Waiting for a worker since" in polled and "/jobs/workers" not in polled
    assert "Waiting for a worker" not in client.get(f"/jobs/{fresh.id}").get_data(as_text=True)


def test_the_board_state_reads_the_counts_stamps_and_workers_the_page_shows(app, db_session):
    """The workers page's refresh answers 304 while this read is unchanged: each of its parts must
    read what the page shows, or the page would stay stale when that part moves."""
    owner = make_user()
    before = board_state()
    assert [row.id for row in before] == [None], "no worker yet: one row of the jobs' stamps"
    running_before, queued_before = before[0].running or 0, before[0].queued or 0
    far = utcnow() + timedelta(days=365)  # later than any other job's stamps
    make_training_job(owner, "running", heartbeat_at=far)
    make_training_job(owner, "succeeded", heartbeat_at=far + timedelta(days=1))  # not running: not read
    oldest = make_training_job(owner, "queued", created_at=utcnow() - timedelta(days=400),
                               queued_at=far - timedelta(days=3), dispatched_at=far - timedelta(days=2))
    make_training_job(owner, "queued", dispatched_at=far - timedelta(days=1))
    make_training_job(owner, "queued")  # never dispatched
    make_training_job(owner, "running", dispatched_at=far + timedelta(days=2))  # not queued: not read
    older, newer = registered("celery@older", heard_ago=timedelta(minutes=5)), registered("celery@newer")

    rows = board_state()

    assert [row.id for row in rows] == [newer.id, older.id], "the latest heartbeat first"
    for row, worker in zip(rows, (newer, older)):
        assert (row.updated_at, row.started_at, row.heartbeat_at, row.stopped_at) == (
            worker.updated_at, worker.started_at, worker.heartbeat_at, worker.stopped_at)
        assert (row.running, row.queued) == (running_before + 2, queued_before + 3)
        assert row.running_heard == far
        assert row.dispatched == far - timedelta(days=1)
        assert (row.oldest_queued, row.oldest_queued_at) == (oldest.id, oldest.queued_at)
