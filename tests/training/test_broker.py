"""The engine end to end on a real broker: real `celery worker` and `celery beat` processes run the jobs."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.factories import make_minion, make_user
from tests.training.broker import broker_app, start_beat, start_together, start_worker, stop_together, wait_until
from tests.training.engine_helpers import queue_internal_job
from webapp import create_app
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingJobEvent
from webapp.training.services import RUN_TASK


@pytest.fixture(scope="module")
def engine(backend, tmp_path_factory):
    """The app, one beat and two workers, on a database of their own."""
    tmp_dir = tmp_path_factory.mktemp(f"broker-{backend}")
    with broker_app(backend, tmp_dir, "_broker") as app:
        processes = {"beat": start_beat(app, tmp_dir, wait=False),
                     **{name: start_worker(app, tmp_dir, name, wait=False) for name in ("alpha", "beta")}}
        start_together(*processes.values())
        with app.app_context():
            owner = make_user()
            minion = make_minion(owner)
            db.session.commit()
            app.config["TEST_OWNER"], app.config["TEST_MINION"] = owner.id, minion.id
        yield app, processes, tmp_dir
        stop_together(processes.values())


@pytest.fixture
def ctx(engine):
    app, _, _ = engine
    with app.app_context():
        yield app
        db.session.remove()


def queue_job(app, **kwargs) -> int:
    from webapp.accounts.models import User
    from webapp.minions.models import Minion

    owner = db.session.get(User, app.config["TEST_OWNER"])
    minion = db.session.get(Minion, app.config["TEST_MINION"])
    return queue_internal_job(owner, minion, **kwargs).id


def job(job_id: int) -> TrainingJob:
    return db.session.get(TrainingJob, job_id)


def messages(job_id: int) -> list[str]:
    return list(db.session.scalars(select(TrainingJobEvent.message)
                                   .where(TrainingJobEvent.training_job_id == job_id).order_by(TrainingJobEvent.id)))


def finished(job_id: int) -> TrainingJob | None:
    current = job(job_id)
    return current if current.status in ("succeeded", "failed", "canceled") else None


def test_a_queued_job_is_run_by_a_worker_and_succeeds(ctx):
    job_id = queue_job(ctx, epochs=3)
    done = wait_until(lambda: finished(job_id), what="the job to finish")
    assert done.status == "succeeded", messages(job_id)
    assert done.worker_name.split("@")[0] in ("alpha", "beta")
    assert done.output_model_version.artifact_uri and done.metrics["val_accuracy"] > done.metrics["baseline_accuracy"]


def test_a_job_dispatched_twice_runs_once(ctx):
    job_id = queue_job(ctx, epochs=2)
    celery = ctx.extensions["celery"]
    for _ in range(3):
        celery.send_task(RUN_TASK, args=[job_id])
    done = wait_until(lambda: finished(job_id), what="the job to finish")
    assert done.status == "succeeded"
    assert done.attempts == 1
    assert sum(message.startswith("Started on") for message in messages(job_id)) == 1


def test_a_job_created_while_the_broker_is_down_runs_once_it_is_back(ctx):
    # A console whose broker is unreachable creates the job: the dispatch fails, the job stays queued...
    unreachable = create_app(dict(ctx.config, CELERY_BROKER_URL="redis://127.0.0.1:9/0"))
    with unreachable.app_context():
        job_id = queue_job(unreachable, epochs=1)
        db.session.remove()
    # ...and the sweeper, on the broker the workers read, dispatches it again.
    done = wait_until(lambda: finished(job_id), what="the sweeper to dispatch it again")
    assert done.status == "succeeded"
    log = messages(job_id)
    again = log.index("No worker claimed the job in time; dispatched again")
    assert again < next(i for i, message in enumerate(log) if message.startswith("Started on"))


def test_a_worker_killed_mid_job_loses_it_and_another_attempt_finishes_it(ctx, engine):
    _, processes, tmp_dir = engine
    job_id = queue_job(ctx, epochs=3, train_rows=800, batch_size=8)
    running = wait_until(lambda: job(job_id).status == "running" and job(job_id).progress > 0 and job(job_id),
                         what="the job to run")
    holder = running.worker_name.split("@")[0]
    processes[holder].kill()
    survivor = "beta" if holder == "alpha" else "alpha"

    requeued = wait_until(lambda: any(m.startswith(f"Worker lost: {holder}@") for m in messages(job_id)),
                          timeout=30, what="the sweeper to notice the lost worker")
    assert requeued
    done = wait_until(lambda: finished(job_id), timeout=120, what="the second attempt to finish")
    assert done.status == "succeeded" and done.attempts == 2
    assert done.worker_name.startswith(f"{survivor}@")
    lost = next(m for m in messages(job_id) if m.startswith("Worker lost"))
    assert "queued again for attempt 2 of 2" in lost
    processes[holder] = start_worker(ctx, tmp_dir, holder)


def test_cancel_stops_the_running_trainer(ctx):
    from webapp.accounts.models import User
    from webapp.training.services import cancel_job

    job_id = queue_job(ctx, epochs=50, train_rows=800, batch_size=8)
    wait_until(lambda: job(job_id).status == "running" and job(job_id).progress > 0, what="the job to run")
    cancel_job(job(job_id), db.session.get(User, ctx.config["TEST_OWNER"]))
    db.session.commit()
    stopped = wait_until(lambda: any(m.startswith("Stopped on") for m in messages(job_id)), timeout=30,
                         what="the trainer to stop")
    assert stopped and job(job_id).status == "canceled" and job(job_id).progress < 1
