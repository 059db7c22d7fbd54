from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text, update

from tests.factories import (
    make_ai_model, make_dataset, make_minion, make_provider, make_provider_config, make_training_job, make_user,
)
from webapp.accounts.models import AuditEvent, Permission, Role, User
from webapp.db import utcnow
from webapp.extensions import db
from webapp.datasets.models import Dataset
from webapp.providers.models import ModelVersion
from webapp.training.models import TrainingJob, TrainingJobDataset, TrainingJobEvent
from webapp.training.services import (
    PENDING_DISPATCH, TRANSITIONS, IllegalTransition, InvalidReport, JobError, JobFilters, apply_report, cancel_job,
    change_job, claim_next_job, create_runner, job_assignment, job_for, parse_capabilities,
    job_list_statement, parse_report, provider_key_for, ReportLimits, retry_job, transition,
)

# The defaults the README documents, written out so the tests need no app.
LIMITS = ReportLimits(events=1000, message_length=4000, metric_keys=100, metric_key_length=100, stored_metrics=200)

LEGAL = [(source, target) for source, targets in TRANSITIONS.items() for target in sorted(targets)]
# Self-transitions (running -> running, queued -> queued) included: the machine refuses them too.
ILLEGAL = [(source, target) for source in TRANSITIONS for target in TRANSITIONS if target not in TRANSITIONS[source]]


def test_the_state_machine_allows_exactly_the_documented_transitions():
    assert set(LEGAL) == {
        ("queued", "running"), ("queued", "canceled"), ("queued", "failed"),
        ("running", "succeeded"), ("running", "failed"), ("running", "canceled"),
        ("running", "queued"),  # a lost worker's job, queued for another attempt
    }


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_legal_transitions_stamp_the_timeline(db_session, source, target):
    job = make_training_job(make_user(), status=source)
    transition(job, target)
    assert job.status == target
    assert (job.started_at is not None) == ("running" in (source, target))
    assert (job.finished_at is not None) == (target in ("succeeded", "failed", "canceled"))


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_illegal_transitions_are_refused_with_a_clear_message(db_session, source, target):
    job = make_training_job(make_user(), status=source)
    with pytest.raises(IllegalTransition, match=f"is {source} and cannot become {target}"):
        transition(job, target)
    assert job.status == source


def test_a_refused_transition_names_what_the_job_can_become_instead(db_session):
    queued, finished = make_training_job(make_user()), make_training_job(make_user(), status="succeeded")
    with pytest.raises(IllegalTransition) as refused:
        transition(queued, "succeeded")
    assert str(refused.value) == (f"Job #{queued.id} is queued and cannot become succeeded; "
                                  "it can become canceled, failed, running.")
    with pytest.raises(IllegalTransition) as refused:
        transition(finished, "running")
    assert str(refused.value) == (f"Job #{finished.id} is succeeded and cannot become running; "
                                  "it can become nothing (it has finished).")


def test_self_transitions_are_among_the_refused():
    assert {(status, status) for status in TRANSITIONS} <= set(ILLEGAL)


@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_runner_repeating_the_current_status_changes_nothing_but_progress(db_session, status):
    job = make_training_job(make_user(), status=status)
    started_at, runner = job.started_at, create_runner("repeater")[0]
    assert apply_report(job, runner, parse_report({"status": status, "progress": 0.5}, LIMITS), LIMITS) is None
    assert (job.status, job.started_at, job.progress) == (status, started_at, 0.5)
    assert db_session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "training_job.report", AuditEvent.object_id == job.id)) == 0


def test_job_for_scopes_to_the_owner_unless_the_user_may_see_all(db_session):
    owner, stranger, admin = make_user(), make_user(), make_user(role="admin")
    watcher = make_user(role=None)  # may see every job (what job_for asks by default), but not act on others'
    watcher.roles = [Role(name="job-watcher", permissions=[
        db_session.scalars(select(Permission).filter_by(code="jobs.read_all")).one()])]
    job = make_training_job(owner)
    assert job_for(owner, job.id) is job
    assert job_for(stranger, job.id) is None
    assert job_for(stranger, job.id, "jobs.manage") is None
    assert job_for(admin, job.id, "jobs.manage") is job
    assert [job_for(watcher, job.id), job_for(watcher, job.id, "jobs.manage")] == [job, None]


def test_the_list_shows_a_user_only_their_jobs_and_filters(db_session):
    ada, grace = make_user(), make_user()
    running = make_training_job(ada, status="running", job_type="internal")
    make_training_job(ada, status="failed")
    make_training_job(grace, status="running")
    mine = db_session.scalars(job_list_statement(ada, JobFilters())).unique().all()
    assert {job.user_id for job in mine} == {ada.id} and len(mine) == 2
    assert db_session.scalars(job_list_statement(ada, JobFilters(status="running"))).unique().all() == [running]


def test_staff_filter_the_list_by_owner_email(db_session):
    ada, admin = make_user(email="ada-filter@example.test"), make_user(role="admin")
    job = make_training_job(ada)
    make_training_job(make_user())
    found = db_session.scalars(job_list_statement(admin, JobFilters(owner_email="ADA-filter@example.test"))).all()
    assert found == [job]


def test_cancel_is_audited_and_refused_once_finished(db_session):
    owner = make_user()
    job = make_training_job(owner, status="running", progress=0.4)
    cancel_job(job, owner)
    assert job.status == "canceled"
    audit = db_session.scalars(select(AuditEvent).filter_by(action="training_job.cancel", object_id=job.id)).one()
    assert (audit.actor_id, audit.changes) == (owner.id, {"status": ["running", "canceled"]})
    db_session.flush()
    event = db_session.scalars(select(TrainingJobEvent).filter_by(training_job_id=job.id)).one()
    assert (event.level, event.message, event.progress) == ("warning", f"Canceled by {owner.display_name}", 0.4)
    with pytest.raises(IllegalTransition):
        cancel_job(job, owner)


def test_retry_copies_the_inputs_and_links_the_original_once(db_session):
    owner = make_user()
    minion = make_minion(owner)
    provider = make_provider()
    job = make_training_job(owner, status="failed", minion=minion, hyperparameters={"epochs": 5}, name="Night run",
                            job_type="external", provider_id=provider.id, max_attempts=3, progress=0.6)
    dataset = Dataset(name="D", slug="d", uri="s3://d", owner_user_id=owner.id)
    db_session.add(dataset)
    db_session.flush()
    db_session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split="validation"))
    db_session.flush()
    db_session.refresh(job)
    version = job.lock_version

    retry, created = retry_job(job, owner)
    assert created and retry.retry_of_id == job.id and retry.status == "queued"
    assert (retry.user_id, retry.minion_id, retry.base_model_id, retry.hyperparameters) == (
        owner.id, minion.id, job.base_model_id, {"epochs": 5})
    assert (retry.job_type, retry.provider_id, retry.name, retry.max_attempts, retry.progress) == (
        "external", provider.id, "Night run (retry)", 3, 0.0)
    assert [(link.dataset_id, link.split) for link in retry.datasets] == [(dataset.id, "validation")]
    assert retry.queued_at <= retry.dispatched_at and db_session.info[PENDING_DISPATCH] == {retry.id}
    assert job.lock_version == version + 1, "a concurrent second retry of the job fails"
    event = db_session.scalars(select(TrainingJobEvent).filter_by(training_job_id=retry.id)).one()
    assert (event.level, event.message, event.progress) == ("info", f"Queued as a retry of job #{job.id}", None)
    audit = db_session.scalars(select(AuditEvent).filter_by(action="training_job.retry")).one()
    assert (audit.object_type, audit.object_id, audit.actor_id, audit.changes) == (
        "training_jobs", job.id, owner.id, {"retry_id": retry.id})

    again, created_again = retry_job(job, owner)
    assert again is retry and not created_again
    assert db_session.scalars(select(TrainingJob).filter_by(retry_of_id=job.id)).all() == [retry]


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_only_failed_or_canceled_jobs_can_be_retried(db_session, status):
    owner = make_user()
    job = make_training_job(owner, status=status)
    with pytest.raises(JobError) as refused:
        retry_job(job, owner)
    assert str(refused.value) == f"Job #{job.id} is {status}; only failed or canceled jobs can be retried."


def test_runners_create_prints_a_token_stored_only_hashed(app, db_session):
    from webapp.security import hash_token
    from webapp.training.models import JobRunner
    from webapp.training.services import runner_for_token

    result = app.test_cli_runner().invoke(args=["runners", "create", "gpu-box-1"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    runner = db_session.scalars(select(JobRunner).filter_by(name="gpu-box-1")).one()
    assert runner.token_hash == hash_token(token) and token not in runner.token_hash
    assert runner_for_token(token).id == runner.id
    assert [tuple(row) for row in db_session.execute(select(AuditEvent.action, AuditEvent.changes).where(
        AuditEvent.object_type == "job_runners", AuditEvent.object_id == runner.id))] == [
        ("job_runner.create", {"name": "gpu-box-1"})]
    assert app.test_cli_runner().invoke(args=["runners", "create", "gpu-box-1"]).exit_code == 1


def status_counts() -> dict[str, int]:
    from webapp.training.models import TrainingJobStatusCount

    return dict(db.session.execute(select(TrainingJobStatusCount.status, TrainingJobStatusCount.count)).all())


def live_counts() -> dict[str, int]:
    return {status: db.session.scalar(select(func.count()).where(TrainingJob.status == status))
            for status in TRANSITIONS}


def test_the_status_counts_follow_every_insert_change_and_delete(db_session):
    """Kept by triggers: the ORM, a bulk UPDATE and a cascade from a deleted owner all count."""
    from webapp.accounts.models import User
    from webapp.training.services import staff_summary

    owner, other = make_user(), make_user()
    jobs = [make_training_job(owner, status="queued") for _ in range(3)]
    make_training_job(other, status="failed")
    assert status_counts() == live_counts()
    transition(jobs[0], "running")
    jobs[1].progress = 0.5  # a write that keeps the status
    db_session.flush()
    assert status_counts() == live_counts()
    db_session.execute(update(TrainingJob).where(TrainingJob.id == jobs[2].id).values(status="canceled"))
    assert status_counts() == live_counts()
    db_session.execute(delete(User).where(User.id == owner.id))
    assert status_counts() == live_counts()
    assert staff_summary().counts == live_counts()


def test_a_job_whose_dataset_was_deleted_keeps_its_history_but_is_not_retried(client, db_session, store):
    from tests.conftest import login
    from tests.factories import make_dataset
    from webapp.datasets.services import delete_dataset

    user = make_user()
    job = make_training_job(user, status="failed")
    dataset = make_dataset(user, name="Gone soon")
    db_session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split="validation"))
    db_session.flush()
    delete_dataset(dataset, user)
    db_session.expire_all()
    with pytest.raises(JobError) as refused:
        retry_job(job, user)
    assert str(refused.value) == f"A dataset job #{job.id} trained on has been deleted; start a new job instead."
    login(client, user)
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "A deleted dataset" in page and "validation" in page
def test_a_failure_report_keeps_the_progress_the_job_reached(db_session):
    from tests.factories import make_job_runner
    job = make_training_job(make_user(), status="running", progress=0.6)
    runner, _token = make_job_runner()
    apply_report(job, runner, parse_report({"status": "failed", "progress": 0, "error": "out of memory"}, LIMITS), LIMITS)
    assert (job.status, job.progress) == ("failed", 0.6)


def test_each_metric_has_its_own_chart_and_a_single_report_is_a_point(db_session):
    from webapp.training.models import TrainingJobEvent
    from webapp.training.reads import job_page

    owner = make_user()
    job = make_training_job(owner, status="running")
    for metrics in ({"loss": 2.0, "learning_rate": 0.0002, "accuracy": 0.5}, {"loss": 1.0, "learning_rate": 0.0001}):
        db.session.add(TrainingJobEvent(training_job_id=job.id, level="info", message="step", metrics=metrics))
    db.session.flush()
    chart = job_page(owner, job.id).chart
    by_name = {series.name: series for series in chart.series}
    assert sorted(by_name) == ["accuracy", "learning_rate", "loss"]
    rate = by_name["learning_rate"]
    assert (rate.low, rate.high, rate.last) == (0.0001, 0.0002, 0.0001)
    # On its own axis the learning rate spans the whole plot height instead of lying flat at zero.
    assert [y for _, y in rate.points] == [chart.plot_top, chart.plot_bottom]
    assert by_name["accuracy"].reports == 1 and len(by_name["accuracy"].points) == 1


def test_the_job_page_reads_events_as_written_and_only_for_whom_may_see_the_job(db_session):
    from webapp.training.models import TrainingJobEvent
    from webapp.training.reads import job_page

    owner, stranger, admin = make_user(), make_user(), make_user(role="admin")
    job = make_training_job(owner, status="running")
    first, second = (TrainingJobEvent(training_job_id=job.id, message=message, progress=0.25,
                                      metrics={"loss": 0.30000000000000004, "note": "warm"})
                     for message in ("Step 1", "Step 2"))
    db.session.add_all([first, second])
    db.session.flush()
    page = job_page(owner, job.id)
    assert [(event["id"], event["message"], event["created_at"], event["metrics"]) for event in page.events] == [
        (event.id, event.message, event.created_at, event.metrics) for event in (second, first)]
    assert page.events[0]["created_at"].utcoffset() == timedelta(0)
    assert [event["id"] for event in job_page(owner, job.id, after_id=first.id).events] == [second.id]
    assert job_page(stranger, job.id) is None
    assert job_page(admin, job.id).job.owner_name == owner.display_name


def rename(name: str, seen: list[str], applies: bool = True):
    def change(job: TrainingJob) -> bool:
        seen.append(job.name)
        job.name = name
        return applies
    return change


def test_a_job_change_reads_the_row_afresh_and_commits_only_what_applies(db_session):
    job = make_training_job(make_user(), name="Loaded")
    db_session.commit()
    # Written behind the session's back, as another process would: the change must see it.
    db_session.execute(text("UPDATE training_jobs SET name = 'Written elsewhere' WHERE id = :id"), {"id": job.id})
    seen: list[str] = []
    assert change_job(job.id, rename("Applied", seen)) is job
    assert change_job(job.id, rename("Skipped", seen, applies=False)) is None
    assert seen == ["Written elsewhere", "Applied"]
    db_session.expire_all()
    assert job.name == "Applied"
    assert change_job(job.id + 1000, rename("Nobody", seen)) is None and len(seen) == 2


def test_a_runner_claims_the_oldest_queued_job_of_its_types_with_what_it_needs_to_run_it(app, db_session):
    owner, hours_ago = make_user(), lambda hours: utcnow() - timedelta(hours=hours)
    model = make_ai_model(model_key="intent-base")
    external = make_training_job(owner, job_type="external", provider_id=make_provider(slug="acme").id,
                                 queued_at=hours_ago(4))
    make_training_job(owner, "running", queued_at=hours_ago(5))
    first_of_two, second_of_two = (make_training_job(owner, queued_at=hours_ago(2)) for _ in range(2))
    oldest = make_training_job(owner, base_model_id=model.id, name="Night run", hyperparameters={"epochs": 4},
                               queued_at=hours_ago(3))  # queued first, though written after the two
    dataset = Dataset(name="D", slug="d-claimed", uri="s3://datasets/d.jsonl", format="jsonl", owner_user_id=owner.id)
    db_session.add(dataset)
    db_session.flush()
    db_session.add(TrainingJobDataset(training_job_id=oldest.id, dataset_id=dataset.id, split="train"))
    db_session.flush()

    job = claim_next_job(["internal"], "runner:r1")
    assert job is oldest and (job.status, job.worker_name, job.attempts) == ("running", "runner:r1", 1)
    assert job.started_at is not None and job.heartbeat_at == job.started_at == job.updated_at
    assert job.lock_version == 2, "an edit read before the claim fails"
    assert db_session.execute(select(TrainingJobEvent.message, TrainingJobEvent.progress)
                              .filter_by(training_job_id=job.id)).all() == [("Started on runner:r1 (attempt 1 of 2)", 0.0)]
    assert job_assignment(job) == {
        "job": job.id, "name": "Night run", "job_type": "internal", "status": "running", "attempt": 1,
        "base_model": {"id": model.id, "key": "intent-base", "type": "reference"}, "provider": None,
        "hyperparameters": {"epochs": 4},
        "datasets": [{"dataset": dataset.id, "split": "train", "format": "jsonl", "uri": "s3://datasets/d.jsonl"}],
        "heartbeat_seconds": app.config["JOB_HEARTBEAT_SECONDS"], "lease_seconds": app.config["JOB_LEASE_SECONDS"],
    }
    assert [claim_next_job(["internal"], "runner:r1") for _ in range(3)] == [first_of_two, second_of_two, None]
    claimed = claim_next_job(["internal", "external"], "runner:r2")
    assert claimed is external and job_assignment(claimed)["provider"] == "acme"


@pytest.mark.parametrize(("body", "refusal"), [
    ([], 'The body must be {"capabilities": [job types]}.'),
    ({"capabilities": ["internal"], "gpu": True}, 'The body must be {"capabilities": [job types]}.'),
    ({}, "capabilities must be a non-empty list of internal, external."),
    ({"capabilities": []}, "capabilities must be a non-empty list of internal, external."),
    ({"capabilities": "internal"}, "capabilities must be a non-empty list of internal, external."),
    ({"capabilities": ["internal", "quantum"]}, "capabilities must be a non-empty list of internal, external."),
])
def test_a_claim_names_its_job_types_or_is_refused_in_words(body, refusal):
    with pytest.raises(InvalidReport) as refused:
        parse_capabilities(body)
    assert str(refused.value) == refusal and refused.value.status == 422


def test_a_claim_lists_each_job_type_once_in_its_order():
    assert parse_capabilities({"capabilities": ["external", "internal", "external"]}) == ["external", "internal"]


def test_an_external_job_uses_only_the_user_s_enabled_config_with_a_key_for_the_model_s_provider(db_session):
    provider, elsewhere = make_provider(), make_provider()
    model = make_ai_model(model_type="external", provider_id=provider.id)
    other_provider_only, disabled, keyless, ready = (make_user() for _ in range(4))
    make_provider_config(other_provider_only, elsewhere, api_key="sk-elsewhere")
    make_provider_config(disabled, provider, api_key="sk-disabled", is_enabled=False)
    make_provider_config(keyless, provider)
    config = make_provider_config(ready, provider, api_key="sk-ready")
    assert [provider_key_for(user, model) for user in (other_provider_only, disabled, keyless, ready)] == \
        [None, None, None, config]
    assert provider_key_for(ready, make_ai_model(provider_id=provider.id)) is None, "a reference model trains here"


def test_a_found_job_comes_with_everything_its_page_shows_in_two_queries(db_session, count_queries):
    owner, admin = make_user(), make_user(role="admin")
    minion = make_minion(owner)
    version = ModelVersion(model_id=minion.model_id, version="v1")
    db_session.add(version)
    db_session.flush()
    job = make_training_job(owner, minion=minion, provider_id=make_provider().id, output_model_version_id=version.id)
    db_session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=make_dataset(owner).id, split="train"))
    db_session.flush()
    job_id = job.id
    db_session.expunge_all()
    reader = db_session.get(User, admin.id)  # the owner is not loaded already: the job must bring them
    reader.permission_codes()
    with count_queries() as counter:
        job = job_for(reader, job_id, "jobs.read_all")
        shown = (job.user.email, job.minion.name, job.base_model.name, job.provider.name, job.output_model_version.version,
                 [link.dataset.name for link in job.datasets])
    assert shown[0] == owner.email and shown[4] == "v1" and counter.count == 2, counter.statements


def test_the_list_sorts_as_asked_and_falls_back_to_newest_for_an_unknown_sort(db_session):
    ada = make_user()
    older = make_training_job(ada, name="B", created_at=utcnow() - timedelta(hours=1))
    newer = make_training_job(ada, name="A")

    def listed(sort: str) -> list[int]:
        return [job.id for job in db_session.scalars(job_list_statement(ada, JobFilters(sort=sort))).unique()]

    assert [listed(sort) for sort in ("newest", "oldest", "name", "bogus")] == [
        [newer.id, older.id], [older.id, newer.id], [newer.id, older.id], [newer.id, older.id]]
