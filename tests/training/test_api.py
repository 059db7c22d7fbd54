import pytest
from sqlalchemy import func, select

from tests.factories import make_job_runner, make_minion, make_training_job, make_user
from webapp.minions.models import MinionXpEvent
from webapp.minions.services import JOB_SUCCESS_XP
from webapp.providers.models import ModelVersion
from webapp.training.models import JobRunner, TrainingJobEvent


@pytest.fixture
def runner_token(db_session):
    _, token = make_job_runner()
    return token


def report(client, job_id, token, body):
    return client.post(f"/api/runner/jobs/{job_id}/report", json=body,
                       headers={"Authorization": f"Bearer {token}"} if token else {})


def snapshot(db_session, job):
    db_session.expire_all()
    events = db_session.scalar(select(func.count()).select_from(TrainingJobEvent).filter_by(training_job_id=job.id))
    return (job.status, job.progress, dict(job.metrics), events)


def test_progress_metrics_and_events_are_recorded(client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    response = report(client, job.id, runner_token, {
        "progress": 0.5, "metrics": {"loss": 1.2},
        "events": [{"level": "info", "message": "Step 600 of 1200", "progress": 0.5, "metrics": {"loss": 1.2}}],
    })
    assert response.status_code == 200 and response.json["progress"] == 0.5
    db_session.expire_all()
    assert (job.progress, job.metrics) == (0.5, {"loss": 1.2})
    event = db_session.scalars(select(TrainingJobEvent).filter_by(training_job_id=job.id)).one()
    assert (event.message, event.metrics) == ("Step 600 of 1200", {"loss": 1.2})
    assert db_session.scalar(select(JobRunner.last_seen_at)) is not None


def test_success_links_a_new_version_and_awards_xp_once(client, db_session, runner_token):
    owner = make_user()
    minion = make_minion(owner, xp=40)
    job = make_training_job(owner, status="running", minion=minion)
    first = report(client, job.id, runner_token, {
        "status": "succeeded", "output_model_version": {"version": "v7", "artifact_uri": "s3://models/v7"},
    })
    assert first.status_code == 200 and "note" not in first.json
    again = report(client, job.id, runner_token, {"status": "succeeded"})
    assert again.status_code == 200 and "already succeeded" in again.json["note"]

    db_session.expire_all()
    assert minion.xp == 40 + JOB_SUCCESS_XP
    awards = db_session.scalars(select(MinionXpEvent).filter_by(minion_id=minion.id, training_job_id=job.id)).all()
    assert [award.delta for award in awards] == [JOB_SUCCESS_XP]
    version = db_session.get(ModelVersion, job.output_model_version_id)
    assert (version.version, version.model_id, version.training_job_id) == ("v7", minion.model_id, job.id)
    assert minion.model_version_id == version.id and job.progress == 1.0


def test_success_keeps_the_lineage_from_the_minion_s_current_version(client, db_session, runner_token):
    owner = make_user()
    minion = make_minion(owner)
    parent = ModelVersion(model_id=minion.model_id, version="v1")
    db_session.add(parent)
    db_session.flush()
    minion.model_version_id = parent.id
    job = make_training_job(owner, status="running", minion=minion)
    db_session.flush()
    assert report(client, job.id, runner_token, {"status": "succeeded"}).status_code == 200
    db_session.expire_all()
    assert job.output_model_version.parent_version_id == parent.id
    assert job.output_model_version.version == f"job-{job.id}"


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_bad_token_is_401_json_and_changes_nothing(client, db_session, header):
    job = make_training_job(make_user(), status="running")
    before = snapshot(db_session, job)
    response = client.post(f"/api/runner/jobs/{job.id}/report", json={"progress": 0.9},
                           headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.is_json and response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(db_session, job) == before


def test_an_inactive_runner_is_refused(client, db_session):
    runner, token = make_job_runner()
    runner.is_active = False
    job = make_training_job(make_user(), status="running")
    assert report(client, job.id, token, {"progress": 0.2}).status_code == 401


@pytest.mark.parametrize("body", [
    [1, 2],
    {"progress": 1.5},
    {"progress": "half"},
    {"progress": True},
    {"status": "exploded"},
    {"metrics": {"loss": "low"}},
    {"metrics": [1]},
    {"events": {"message": "x"}},
    {"events": [{"message": ""}]},
    {"events": [{"message": "ok"}, {"level": "shout", "message": "x"}]},
    {"progress": 0.3, "surprise": 1},
    {"status": "succeeded", "output_model_version": {"version": 7}},
])
def test_a_malformed_report_is_422_json_and_changes_nothing(client, db_session, runner_token, body):
    job = make_training_job(make_user(), status="running")
    before = snapshot(db_session, job)
    response = report(client, job.id, runner_token, body)
    assert response.status_code == 422 and response.is_json and response.json["detail"]
    assert snapshot(db_session, job) == before


def test_a_body_that_is_not_json_is_422(client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    response = client.post(f"/api/runner/jobs/{job.id}/report", data="progress=1",
                           headers={"Authorization": f"Bearer {runner_token}"})
    assert response.status_code == 422 and response.is_json


def test_an_illegal_transition_is_409_and_changes_nothing(client, db_session, runner_token):
    job = make_training_job(make_user(), status="queued")
    before = snapshot(db_session, job)
    response = report(client, job.id, runner_token, {"status": "succeeded", "progress": 0.4,
                                                      "events": [{"message": "done"}]})
    assert response.status_code == 409 and "cannot become succeeded" in response.json["detail"]
    assert snapshot(db_session, job) == before


def test_a_duplicate_version_name_is_422_and_the_job_keeps_running(client, db_session, runner_token):
    owner = make_user()
    minion = make_minion(owner)
    db_session.add(ModelVersion(model_id=minion.model_id, version="v1"))
    job = make_training_job(owner, status="running", minion=minion)
    response = report(client, job.id, runner_token, {"status": "succeeded", "output_model_version": {"version": "v1"}})
    assert response.status_code == 422
    db_session.expire_all()
    assert job.status == "running" and minion.xp == 0


def test_an_unknown_job_is_404_json(client, db_session, runner_token):
    response = report(client, 999_999, runner_token, {"progress": 0.1})
    assert response.status_code == 404 and response.is_json


def test_failure_records_the_error(client, db_session, runner_token):
    job = make_training_job(make_user(), status="running")
    response = report(client, job.id, runner_token, {"status": "failed", "error": "CUDA out of memory"})
    assert response.status_code == 200
    db_session.expire_all()
    assert (job.status, job.error_message) == ("failed", "CUDA out of memory")


def test_the_api_needs_no_csrf_token(client, db_session, runner_token, csrf_enabled):
    job = make_training_job(make_user(), status="queued")
    assert report(client, job.id, runner_token, {"status": "running"}).status_code == 200
