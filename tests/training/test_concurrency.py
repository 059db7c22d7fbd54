"""Races on a committed database: runners claiming at once, a user starting jobs at once."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from sqlalchemy import func, select, text

from tests.concurrency import all_at_once
from tests.conftest import LiveServer, app_of_its_own
from tests.factories import (
    make_job_runner,
    make_minion,
    make_plan,
    make_subscription,
    make_training_job,
    make_user,
)
from tests.training.engine_helpers import make_dataset
from webapp.accounts.models import User
from webapp.extensions import db
from webapp.quotas import QuotaExceeded
from webapp.training.models import TrainingJob, TrainingJobEvent
from webapp.database import write_transaction
from webapp.training.services import NewJob, cancel_job, change_job, start_job

RUNNERS = 10


@pytest.fixture(scope="module")
def shared_app(backend, tmp_path_factory):
    with app_of_its_own(backend, tmp_path_factory.mktemp(f"races-{backend}"), "_races") as app:
        yield app


@pytest.fixture(autouse=True)
def no_job_left_queued(shared_app):
    """A runner's claim takes the oldest queued job in the module's database: a job one test leaves
    queued would be claimed by the runner of the next, in whatever order the tests run (mutmut's
    runs choose their own). Each test's leftovers are canceled as an owner would cancel them."""
    yield
    with shared_app.app_context():
        for job in db.session.scalars(select(TrainingJob).where(TrainingJob.status == "queued")):
            cancel_job(job, job.user)
        db.session.commit()


def claim(url: str, token: str) -> dict | None:
    request = urllib.request.Request(f"{url}/api/runner/jobs/claim", method="POST",
                                     data=json.dumps({"capabilities": ["internal"]}).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read()) if response.status == 200 else None


def test_ten_runners_claiming_at_once_get_each_job_once(shared_app):
    with shared_app.app_context():
        owner = make_user()
        jobs = [make_training_job(owner, job_type="internal") for _ in range(6)]
        tokens = [make_job_runner()[1] for _ in range(RUNNERS)]
        db.session.commit()
        job_ids = {job.id for job in jobs}

    with LiveServer(shared_app) as server:
        results = all_at_once(RUNNERS, lambda index: claim(server.url, tokens[index]))

    errors = [result for result in results if isinstance(result, Exception)]
    assert not errors, errors
    claimed = [result["job"] for result in results if result]
    assert sorted(claimed) == sorted(job_ids), "each queued job to exactly one runner"
    assert results.count(None) == RUNNERS - len(job_ids), "the others are told there is nothing (204)"
    assert all(result["attempt"] == 1 and result["status"] == "running" for result in results if result)
    with shared_app.app_context():
        starts = db.session.execute(
            select(TrainingJobEvent.training_job_id, func.count()).where(
                TrainingJobEvent.training_job_id.in_(job_ids), TrainingJobEvent.message.like("Started on runner:%"))
            .group_by(TrainingJobEvent.training_job_id)).all()
        assert sorted(starts) == [(job_id, 1) for job_id in sorted(job_ids)]
        holders = db.session.scalars(select(TrainingJob.worker_name).where(TrainingJob.id.in_(job_ids))).all()
        assert len(set(holders)) == len(job_ids)


def test_a_runner_heartbeats_its_job_and_hears_of_a_cancel(shared_app):
    with shared_app.app_context():
        owner = make_user()
        job = make_training_job(owner, job_type="internal")
        _, token = make_job_runner()
        _, other_token = make_job_runner()
        db.session.commit()
        job_id, owner_id = job.id, owner.id

    def post(path: str, bearer: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{server.url}{path}", method="POST", data=b"{}",
                                         headers={"Authorization": f"Bearer {bearer}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    with LiveServer(shared_app) as server:
        assert claim(server.url, token)["job"] == job_id
        assert post(f"/api/runner/jobs/{job_id}/heartbeat", token) == \
            (200, {"job": job_id, "status": "running", "cancel_requested": False})
        status, body = post(f"/api/runner/jobs/{job_id}/heartbeat", other_token)
        assert status == 409 and "not held by runner" in body["detail"]
        with shared_app.app_context():
            from webapp.accounts.models import User
            from webapp.training.services import cancel_job

            cancel_job(db.session.get(TrainingJob, job_id), db.session.get(User, owner_id))
            db.session.commit()
        assert post(f"/api/runner/jobs/{job_id}/heartbeat", token)[1]["cancel_requested"] is True


def test_starting_jobs_at_once_never_passes_the_quota(shared_app):
    with shared_app.app_context():
        owner = make_user()
        make_subscription(owner, make_plan(quotas={"training_jobs": 3}))
        minion = make_minion(owner)
        train = make_dataset(owner, 20, seed=1, name="Train")
        db.session.commit()
        ids = owner.id, minion.id, train.id

    def start(_index: int):
        from webapp.accounts.models import User
        from webapp.datasets.models import Dataset
        from webapp.minions.models import Minion

        with shared_app.app_context():
            user, minion = db.session.get(User, ids[0]), db.session.get(Minion, ids[1])
            new = NewJob(minion=minion, model=minion.model, validation=None, hyperparameters={},
                         train=db.session.get(Dataset, ids[2]))
            try:
                return write_transaction(lambda: start_job(user, new)).id
            except QuotaExceeded:
                db.session.rollback()
                return "refused"

    results = all_at_once(8, start)
    assert not [result for result in results if isinstance(result, Exception)], results
    assert results.count("refused") == 5
    with shared_app.app_context():
        assert db.session.scalar(select(func.count(TrainingJob.id)).where(TrainingJob.user_id == ids[0])) == 3


def test_a_job_change_waits_for_the_change_holding_the_job_and_then_reads_it_afresh(shared_app):
    with shared_app.app_context():
        job_id = make_training_job(make_user(), name="Job").id
        db.session.commit()
    holding, second_done = threading.Event(), threading.Event()

    def rename(suffix: str, hold: bool):
        def change(job: TrainingJob) -> bool:
            job.name += suffix
            if hold:
                holding.set()
                second_done.wait(1.5)  # long enough for an unlocked second change to finish first
            return True

        with shared_app.app_context():
            changed = change_job(job_id, change)
            return changed.name if changed else None

    first = threading.Thread(target=lambda: results.append(rename(" first", hold=True)))
    results: list[str | None] = []
    first.start()
    assert holding.wait(10)
    results.append(rename(" second", hold=False))
    second_done.set()
    first.join(10)
    assert results == ["Job first", "Job first second"], "the second change waited for the first's commit"
    with shared_app.app_context():
        assert db.session.get(TrainingJob, job_id).name == "Job first second"


@pytest.mark.postgres_only
def test_a_cancel_waits_for_the_report_holding_the_job_and_then_reads_it_afresh(shared_app):
    with shared_app.app_context():
        owner = make_user()
        job_id, owner_id = make_training_job(owner, status="running").id, owner.id
        db.session.commit()
    with shared_app.app_context(), db.engine.connect() as report:
        job = db.session.get(TrainingJob, job_id)  # read before the runner's report below commits
        report.execute(text("UPDATE training_jobs SET progress = 0.5, lock_version = lock_version + 1 WHERE id = :id"),
                       {"id": job_id})
        committing = threading.Timer(1.0, report.commit)
        committing.start()
        cancel_job(job, db.session.get(User, owner_id))  # without the row lock: a stale-data error
        db.session.commit()
        committing.join()
        assert (job.status, job.progress) == ("canceled", 0.5)
