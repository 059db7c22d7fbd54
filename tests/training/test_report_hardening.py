"""Runner reports under hostile or failing conditions: limits, idempotency keys and parallel reports."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from tests.concurrency import all_at_once
from tests.conftest import app_of_its_own
from tests.factories import make_job_runner, make_minion, make_training_job, make_user
from tests.training.test_api import report, snapshot
from webapp.extensions import db
from webapp.providers.models import ModelVersion
from webapp.training.models import (
    JobRunner,
    JobRunnerReport,
    TrainingJob,
    TrainingJobEvent,
)


@pytest.fixture
def runner_token(db_session):
    _, token = make_job_runner()
    return token


def raw_report(client, job_id, token, text: str):
    return client.post(f"/api/runner/jobs/{job_id}/report", data=text, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def events_of(db_session, job) -> int:
    return db_session.scalar(select(func.count()).select_from(TrainingJobEvent).filter_by(training_job_id=job.id))


def test_a_retried_report_is_applied_once_and_answered_alike(client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    body = {"report_id": "step-540", "progress": 0.45, "events": [{"message": "Step 540 of 1200"}]}
    first = report(client, job.id, runner_token, body)
    second = report(client, job.id, runner_token, body)
    assert first.status_code == second.status_code == 200
    assert second.json == first.json == {"job": job.id, "status": "running", "progress": 0.45,
                                         "output_model_version_id": None}
    assert events_of(db_session, job) == 1
    assert db_session.scalar(select(func.count()).select_from(JobRunnerReport)) == 1
    following = report(client, job.id, runner_token, {**body, "report_id": "step-541", "progress": 0.5})
    assert following.json["progress"] == 0.5, "another report id is another report"
    assert events_of(db_session, job) == 2


def test_a_retried_success_registers_one_version_and_awards_xp_once(client, db_session, runner_token):
    owner = make_user()
    minion = make_minion(owner, xp=0)
    job = make_training_job(owner, status="running", minion=minion)
    body = {"report_id": "done-1", "status": "succeeded", "output_model_version": {"version": "v2"}}
    answers = [report(client, job.id, runner_token, body) for _ in range(3)]
    assert {response.status_code for response in answers} == {200}
    assert all(response.json == answers[0].json for response in answers)
    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(ModelVersion).filter_by(training_job_id=job.id)) == 1
    assert minion.xp == 150


def test_a_report_id_reused_for_another_job_is_422(client, db_session, runner_token):
    owner = make_user()
    first, second = make_training_job(owner, status="running"), make_training_job(owner, status="running")
    assert report(client, first.id, runner_token, {"report_id": "r1", "progress": 0.1}).status_code == 200
    response = report(client, second.id, runner_token, {"report_id": "r1", "progress": 0.2})
    assert response.status_code == 422 and f"job #{first.id}" in response.json["detail"]


@pytest.mark.parametrize("text", [
    '{"metrics": {"loss": NaN}}',
    '{"metrics": {"loss": Infinity}}',
    '{"metrics": {"loss": -Infinity}}',
    '{"metrics": {"loss": 1e400}}',
    '{"events": [{"message": "x", "metrics": {"loss": NaN}}]}',
    '{"progress": NaN}',
    "[" * 5_000 + "]" * 5_000,
    '{"events": ' + "[" * 5_000 + "]" * 5_000 + "}",
    '{"events": [{"message": "a\\u0000b"}]}',
    '{"error": "\\ud800", "status": "failed"}',
])
def test_non_finite_numbers_deep_json_and_non_text_are_refused(client, db_session, runner_token, text):
    job = make_training_job(make_user(), status="running")
    before = snapshot(db_session, job)
    response = raw_report(client, job.id, runner_token, text)
    assert response.status_code in (400, 422) and response.is_json and response.json["detail"]
    assert snapshot(db_session, job) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"status": "succeeded", "output_model_version": {"version": "v" * 33}}, "output_model_version.version"),
    ({"status": "succeeded", "output_model_version": {"artifact_uri": "s3://" + "a" * 600}},
     "output_model_version.artifact_uri"),
    ({"events": [{"message": "x" * 4_001}]}, "events[0].message"),
    ({"metrics": {f"m{i}": i for i in range(101)}}, "metrics"),
    ({"metrics": {"k" * 101: 1}}, "metrics"),
    ({"report_id": "r" * 65}, "report_id"),
])
def test_lengths_and_counts_over_their_limits_are_422_naming_the_field(client, db_session, runner_token, body,
                                                                       field):
    job = make_training_job(make_user(), status="running")
    before = snapshot(db_session, job)
    response = report(client, job.id, runner_token, body)
    assert response.status_code == 422 and response.json["detail"].startswith(field)
    assert snapshot(db_session, job) == before


def test_too_many_events_in_one_report_is_413(client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    response = report(client, job.id, runner_token, {"events": [{"message": "x"}] * 1_001})
    assert response.status_code == 413 and "1001 events" in response.json["detail"]
    assert events_of(db_session, job) == 0


def test_the_job_keeps_a_bounded_number_of_metrics(app, client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    limit = app.config["JOB_MAX_STORED_METRICS"]
    for start in range(0, limit, 100):
        metrics = {f"m{i}": i for i in range(start, start + 100)}
        assert report(client, job.id, runner_token, {"metrics": metrics}).status_code == 200
    response = report(client, job.id, runner_token, {"metrics": {"one_more": 1}})
    assert response.status_code == 413
    assert response.json["detail"] == f"The job would keep {limit + 1} metrics; at most {limit} are kept."
    db_session.expire_all()
    assert len(job.metrics) == limit


def test_an_oversized_body_is_413_json_and_stores_nothing(app, client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    before = snapshot(db_session, job)
    padding = "x" * app.config["MAX_CONTENT_LENGTH"]
    response = raw_report(client, job.id, runner_token, json.dumps({"events": [{"message": padding}]}))
    assert response.status_code == 413 and response.is_json
    assert snapshot(db_session, job) == before


def test_the_answer_needs_no_query_after_the_commit(app, client, db_session, runner_token):
    """A database that fails right after the commit cannot turn an applied report into an error."""
    job = make_training_job(make_user(), status="running")
    committed = []

    def note_commit(session) -> None:
        committed.append(True)

    def fail_after_commit(conn, cursor, statement, parameters, context, executemany) -> None:
        if committed and statement.lstrip().upper().startswith("SELECT"):
            raise OperationalError(statement, parameters, Exception("the database went away"))

    connection = db._app_engines[app][None]
    sa.event.listen(Session, "after_commit", note_commit)
    sa.event.listen(connection, "before_cursor_execute", fail_after_commit)
    try:
        response = report(client, job.id, runner_token, {"report_id": "r-1", "progress": 0.7})
    finally:
        sa.event.remove(connection, "before_cursor_execute", fail_after_commit)
        sa.event.remove(Session, "after_commit", note_commit)
    assert committed and response.status_code == 200
    assert response.json == {"job": job.id, "status": "running", "progress": 0.7, "output_model_version_id": None}


def test_last_seen_is_kept_without_the_runner_s_lock_version(client, db_session):
    runner, token = make_job_runner()
    job = make_training_job(make_user(), status="running")
    version = runner.lock_version
    assert report(client, job.id, token, {"progress": 0.2}).status_code == 200
    db_session.expire_all()
    assert runner.last_seen_at is not None and runner.lock_version == version


# --- real concurrency: committed data, one connection per thread ---------------------------------


@pytest.fixture(scope="module")
def committed_app(backend, tmp_path_factory):
    with app_of_its_own(backend, tmp_path_factory.mktemp(f"reports-{backend}"), "_reports") as app:
        yield app


def in_parallel(app, calls) -> list:
    """Run each ``(job_id, token, body)`` report at the same moment from its own thread and connection."""
    return all_at_once(len(calls), lambda index: report(app.test_client(), *calls[index]))


@pytest.mark.postgres_only
def test_one_runner_reporting_on_two_jobs_at_once_is_never_refused(committed_app):
    with committed_app.app_context():
        runner, token = make_job_runner()
        owner = make_user()
        jobs = [make_training_job(owner, status="running").id for _ in range(2)]
        db.session.commit()
        runner_id = runner.id
    statuses = []
    for round_number in range(20):
        answers = in_parallel(committed_app, [
            (job_id, token, {"progress": round_number / 20, "events": [{"message": f"round {round_number}"}]})
            for job_id in jobs
        ])
        statuses += [answer.status_code for answer in answers]
    assert statuses == [200] * 40
    with committed_app.app_context():
        assert db.session.get(JobRunner, runner_id).last_seen_at is not None
        for job_id in jobs:
            assert db.session.scalar(select(func.count()).select_from(TrainingJobEvent)
                                     .filter_by(training_job_id=job_id)) == 20


@pytest.mark.postgres_only
def test_the_same_report_sent_twice_at_once_is_applied_once(committed_app):
    with committed_app.app_context():
        _, token = make_job_runner()
        job_id = make_training_job(make_user(), status="running").id
        db.session.commit()
    for attempt in range(5):
        body = {"report_id": f"concurrent-{attempt}", "events": [{"message": f"attempt {attempt}"}]}
        answers = in_parallel(committed_app, [(job_id, token, body)] * 4)
        assert [answer.status_code for answer in answers] == [200] * 4
        assert all(answer.json == answers[0].json for answer in answers)
    with committed_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TrainingJobEvent)
                                 .filter_by(training_job_id=job_id)) == 5
        assert db.session.get(TrainingJob, job_id).status == "running"
