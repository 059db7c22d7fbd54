"""An external job started as a user starts it, run by a real `celery worker` process on the test broker
against the fake fine-tuning server; the worker keeps its row on the staff workers page meanwhile."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.training.broker import broker_app, start_worker, wait_until
from tests.training.fake_finetune_server import FakeFineTuneServer
from tests.training.test_external import (
    HYPERPARAMETERS, TRAIN_ROWS, VALIDATION_ROWS, fake_provider_minion, make_dataset,
)
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingWorker
from webapp.training.services import NewJob, start_job


@pytest.fixture(scope="module")
def engine(backend, tmp_path_factory):
    """The app, the fake provider and one worker polling it every 0.2 s, on a database of their own."""
    tmp_dir = tmp_path_factory.mktemp(f"external-broker-{backend}")
    with broker_app(backend, tmp_dir, "_external") as app, FakeFineTuneServer() as fake, \
            pytest.MonkeyPatch.context() as env:
        env.setenv("EXTERNAL_JOB_POLL_SECONDS", "0.2")  # the worker process's environment
        env.setenv("PROVIDER_HOST_ALLOWLIST", fake.host)  # the worker's egress may reach the fake provider
        worker = start_worker(app, tmp_dir, "gamma")
        yield app, fake, worker
        worker.stop()


def test_a_worker_fine_tunes_an_external_job_and_shows_on_the_workers_page(engine):
    app, fake, worker = engine
    with app.app_context():
        owner, minion = fake_provider_minion(fake)
        job = start_job(owner, NewJob(minion=minion, model=minion.model,
                                      train=make_dataset(owner, "Support answers", TRAIN_ROWS),
                                      validation=make_dataset(owner, "Held out", VALIDATION_ROWS),
                                      hyperparameters=HYPERPARAMETERS))
        db.session.commit()  # dispatched to the worker after this commit
        job_id = job.id

        done = wait_until(lambda: (j := db.session.get(TrainingJob, job_id)).status in ("succeeded", "failed") and j,
                          what="the external job to finish")

        assert done.status == "succeeded", done.error_message
        at_provider = fake.state.jobs[done.external_job_id]
        assert done.output_model_version.external_model_id == at_provider.fine_tuned_model
        assert done.worker_name.startswith("gamma@")
        registered = wait_until(lambda: db.session.scalar(
            select(TrainingWorker).where(TrainingWorker.name == done.worker_name, TrainingWorker.processed >= 1)),
            what="the worker's task count")
        assert registered.stopped_at is None and registered.failed == 0

    worker.stop()
    with app.app_context():
        stopped = db.session.scalar(select(TrainingWorker).where(TrainingWorker.name == done.worker_name))
        assert stopped.stopped_at is not None
