"""Runner reports parsed and applied without HTTP, the metrics chart and the staff summary, with values written out."""
import warnings
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from tests.factories import make_ai_model, make_minion, make_training_job, make_user
from webapp.accounts.models import AuditEvent
from webapp.db import utcnow
from webapp.extensions import db
from webapp.providers.models import ModelVersion
from webapp.training.models import JobRunnerReport, TrainingJobEvent
from webapp.training import services as training_services
from webapp.training.reads import job_page
from webapp.training.services import (
    IllegalTransition, InvalidReport, Report, ReportLimits, apply_report, create_runner, parse_report, receive_report,
    retried_name, staff_summary, transition,
)

# The defaults the README documents, written out so the tests need no app.
LIMITS = ReportLimits(events=1000, message_length=4000, metric_keys=100, metric_key_length=100, stored_metrics=200)


def test_a_full_report_is_parsed_into_typed_values():
    report = parse_report({
        "status": "running", "progress": 1, "metrics": {"loss": 2},
        "events": [{"message": "  Step 1  ", "progress": 0, "metrics": {"loss": 2.5}}, {"message": "x", "level": "error"}],
        "output_model_version": {"version": "v2", "artifact_uri": "s3://m/v2", "metrics": {"acc": 0.9}},
    }, LIMITS)
    assert report == Report(
        status="running", progress=1.0, metrics={"loss": 2},
        events=[{"level": "info", "message": "Step 1", "progress": 0.0, "metrics": {"loss": 2.5}},
                {"level": "error", "message": "x", "progress": None, "metrics": {}}],
        error=None, output_version={"version": "v2", "artifact_uri": "s3://m/v2", "metrics": {"acc": 0.9}},
    )
    assert isinstance(report.progress, float)


def test_an_empty_report_changes_nothing():
    assert parse_report({}, LIMITS) == Report(None, None, {}, [], None, {"version": None, "artifact_uri": None, "metrics": {}})


@pytest.mark.parametrize(("body", "message"), [
    ("text", "The body must be a JSON object."),
    ({"b": 1, "a": 2}, "Unknown fields: a, b."),
    ({"status": "done"}, "status must be one of queued, running, succeeded, failed, canceled."),
    ({"events": "x"}, "events must be a list."),
    ({"events": ["x"]}, "events[0] must be an object with a message."),
    ({"events": [{"message": 5}]}, "events[0].message must be a non-empty string."),
    ({"error": 3}, "error must be a string."),
    ({"progress": -0.1}, "progress must be a number from 0 to 1."),
    ({"progress": 1.01}, "progress must be a number from 0 to 1."),
    ({"metrics": {"ok": 1, "flag": True}}, "metrics must be an object of finite numbers."),
    ({"events": [{"message": "ok"}, {"message": "   "}]}, "events[1].message must be a non-empty string."),
    ({"events": [{"message": "ok", "level": "loud"}]}, "events[0].level must be one of debug, info, warning, error."),
    ({"events": [{"message": "ok", "progress": 2}]}, "events[0].progress must be a number from 0 to 1."),
    ({"events": [{"message": "ok", "metrics": {"x": "1"}}]}, "events[0].metrics must be an object of finite numbers."),
    ({"output_model_version": {"artifact_uri": 1}}, "output_model_version.artifact_uri must be a string."),
    ({"output_model_version": {"metrics": {"a": "b"}}}, "output metrics must be an object of finite numbers."),
])
def test_each_malformed_field_is_named_in_the_refusal(body, message):
    with pytest.raises(InvalidReport) as refusal:
        parse_report(body, LIMITS)
    assert str(refusal.value).startswith(message) and refusal.value.status == 422


def test_each_limit_is_inclusive_and_one_more_is_refused_with_its_numbers():
    at_limit = {
        "report_id": "r" * 64, "metrics": {f"{index:0>100}": index for index in range(100)},
        "events": [{"message": "m" * 4000}] + [{"message": "m"}] * 999,
    }
    parsed = parse_report(at_limit, LIMITS)
    assert (len(parsed.report_id), len(parsed.metrics), len(parsed.events), len(parsed.events[0]["message"])) == \
        (64, 100, 1000, 4000)
    over = [
        ({"report_id": "r" * 65}, "report_id is 65 characters long; at most 64 are allowed."),
        ({"metrics": {"x" * 101: 1}}, "metrics has a name of 101 characters; at most 100 are allowed."),
        ({"metrics": {str(index): index for index in range(101)}}, "metrics has 101 names; at most 100 are allowed."),
        ({"events": [{"message": "m" * 4001}]}, "events[0].message is 4001 characters long; at most 4000 are allowed."),
        ({"events": [{"message": "m"}] * 1001}, "events holds 1001 events; at most 1000 fit in one report."),
    ]
    for body, message in over:
        with pytest.raises(InvalidReport) as refusal:
            parse_report(body, LIMITS)
        assert str(refusal.value) == message


@pytest.mark.parametrize("report_id", [None, "", "   ", 7])
def test_a_report_id_once_sent_must_be_a_non_empty_string(report_id):
    with pytest.raises(InvalidReport) as refusal:
        parse_report({"report_id": report_id}, LIMITS)
    assert str(refusal.value) == "report_id must be a non-empty string."


def test_unknown_fields_are_listed_sorted_and_cut_at_300_characters():
    fields = {f"field_{index:03}": 1 for index in range(60)}  # 9 characters and ", " each: 658 in all
    with pytest.raises(InvalidReport) as refusal:
        parse_report(fields, LIMITS)
    listed = ", ".join(f"field_{index:03}" for index in range(28))  # 306 characters, of which 300 are shown
    assert str(refusal.value) == f"Unknown fields: {listed[:300]}." and len(listed) == 306


def test_finishing_stamps_progress_and_the_default_error_message(db_session):
    succeeded, failed, explained = (make_training_job(make_user(), status="running") for _ in range(3))
    transition(succeeded, "succeeded")
    transition(failed, "failed")
    transition(explained, "failed", "CUDA out of memory")
    assert succeeded.progress == 1.0 and succeeded.error_message is None
    assert failed.error_message == "The runner reported a failure without a message."
    assert explained.error_message == "CUDA out of memory"
    with pytest.raises(InvalidReport, match="Unknown status 'paused'"):
        transition(make_training_job(make_user()), "paused")


def test_a_retry_is_named_once():
    assert retried_name("Poetry v4") == "Poetry v4 (retry)"
    assert retried_name("Poetry v4 (retry)") == "Poetry v4 (retry)"


def test_the_chart_scales_each_numeric_metric_into_its_own_line(db_session):
    owner = make_user()
    job = make_training_job(owner, status="running")
    for metrics in ({"loss": 2.0, "step": 1}, {}, {"loss": 1.0, "acc": 0.5, "note": "x"}, {"loss": 0.0, "acc": 0.5}):
        db.session.add(TrainingJobEvent(training_job_id=job.id, message="m", metrics=metrics))
    db.session.flush()
    chart = job_page(owner, job.id).chart
    assert (chart.width, chart.height, chart.samples) == (320, 150, 3)
    series = {line.name: line for line in chart.series}
    assert sorted(series) == ["acc", "loss"], "text values and the step counter are not plotted"
    assert series["loss"].polyline == "64.0,12.0 186.0,67.0 308.0,122.0"
    assert (series["loss"].last, series["loss"].low, series["loss"].high) == (0.0, 0.0, 2.0)
    assert series["acc"].polyline == "186.0,67.0 308.0,67.0", "a flat line sits mid-height on its own axis"
    assert series["acc"].reports == 2


def test_the_staff_summary_counts_the_last_day_only(db_session):
    before = staff_summary()
    assert (before.finished_last_day, before.failure_rate, before.oldest_queued_at) == (0, None, None)
    owner = make_user()
    make_training_job(owner, status="failed")
    make_training_job(owner, status="succeeded")
    make_training_job(owner, status="succeeded")
    old = make_training_job(owner, status="failed")
    old.finished_at = utcnow() - timedelta(hours=24, minutes=30)
    make_training_job(owner, status="queued")
    waiting_longest = make_training_job(owner, status="queued", created_at=utcnow() - timedelta(hours=3))
    make_training_job(owner, status="running", created_at=utcnow() - timedelta(hours=5))
    db.session.flush()
    summary = staff_summary()
    assert summary.finished_last_day == before.finished_last_day + 3
    added = {"queued": 2, "running": 1, "succeeded": 2, "failed": 2, "canceled": 0}
    assert summary.counts == {status: before.counts[status] + added[status] for status in added}
    assert summary.failure_rate == pytest.approx(1 / 3)
    assert summary.oldest_queued_at == waiting_longest.created_at, "the queued job waiting longest, not a running one"
    assert timedelta(hours=3) <= summary.oldest_queued_age < timedelta(hours=3, minutes=1)


def test_a_success_report_ends_at_full_progress_whatever_progress_it_carries(db_session):
    job = make_training_job(make_user(), status="running", progress=0.4)
    runner, _token = create_runner("finisher")
    apply_report(job, runner, parse_report({"status": "succeeded", "progress": 0.3}, LIMITS), LIMITS)
    assert (job.status, job.progress) == ("succeeded", 1.0)
    running = make_training_job(make_user(), status="running", progress=0.4)
    apply_report(running, runner, parse_report({"progress": 0.3}, LIMITS), LIMITS)
    assert running.progress == 0.3, "a running job takes the progress it reports, even backwards"


def succeeded(job, runner, **output_version) -> None:
    body = {"status": "succeeded", "output_model_version": output_version}
    assert apply_report(job, runner, parse_report(body, LIMITS), LIMITS) is None


def test_a_success_registers_its_version_on_the_minions_model_under_a_name_that_model_has_not_used(db_session):
    owner, runner = make_user(), create_runner("registrar")[0]
    minion = make_minion(owner)
    # Trained from another base model than the minion's: the version belongs to the minion's model.
    job = make_training_job(owner, "running", minion=minion, base_model_id=make_ai_model().id)
    db.session.add(ModelVersion(model_id=job.base_model_id, version="v1"))
    succeeded(job, runner, version="v1", artifact_uri="s3://models/v1", metrics={"acc": 0.9})
    version = job.output_model_version
    assert (version.model_id, version.version, version.training_job_id, version.created_by_id,
            version.parent_version_id, version.artifact_uri, version.metrics) == (
        minion.model_id, "v1", job.id, owner.id, None, "s3://models/v1", {"acc": 0.9})

    without_minion = make_training_job(owner, "running")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no look-up of a minion it has not got
        succeeded(without_minion, runner)
    version = without_minion.output_model_version
    assert (version.model_id, version.version, version.parent_version_id) == (
        without_minion.base_model_id, f"job-{without_minion.id}", None)

    again = make_training_job(owner, "running", minion=minion)
    with pytest.raises(InvalidReport) as refused:
        succeeded(again, runner, version="v1")
    assert str(refused.value) == "Model version 'v1' already exists for this model."


def test_a_reported_status_change_is_audited_with_the_runner_and_a_finished_job_hears_only_its_own_status(db_session):
    runner = create_runner("auditor")[0]
    job = make_training_job(make_user(), "running", progress=0.5)
    failure = {"status": "failed", "error": "CUDA out of memory", "progress": 0.2}
    assert apply_report(job, runner, parse_report(failure, LIMITS), LIMITS) is None
    assert (job.status, job.error_message, job.progress) == ("failed", "CUDA out of memory", 0.5)
    audit = db.session.scalars(select(AuditEvent).filter_by(action="training_job.report", object_id=job.id)).one()
    assert (audit.object_type, audit.actor_id, audit.changes) == (
        "training_jobs", None, {"status": ["running", "failed"], "runner": "auditor"})

    assert apply_report(job, runner, parse_report({"status": "failed"}, LIMITS), LIMITS) == \
        f"Job #{job.id} is already failed; nothing changed."
    with pytest.raises(IllegalTransition) as refused:
        apply_report(job, runner, parse_report({"progress": 0.9}, LIMITS), LIMITS)
    assert str(refused.value) == \
        f"Job #{job.id} is failed and cannot become updated; it can become nothing (it has finished)."
    with pytest.raises(IllegalTransition, match="is failed and cannot become succeeded"):
        apply_report(job, runner, parse_report({"status": "succeeded"}, LIMITS), LIMITS)
    assert job.output_model_version_id is None and job.progress == 0.5


def test_a_report_id_applies_once_per_runner_and_names_the_job_it_was_used_for(db_session):
    runner, other_runner = create_runner("keyed")[0], create_runner("keyed-too")[0]
    job, other_job = make_training_job(make_user(), "running"), make_training_job(make_user(), "running")

    def receive(target, by, **body):
        return receive_report(target, by, parse_report(body, LIMITS), LIMITS)

    first = receive(job, runner, progress=0.4, report_id="r-1")
    assert first == {"job": job.id, "status": "running", "progress": 0.4, "output_model_version_id": None}
    assert receive(job, runner, progress=0.9, report_id="r-1") == first and job.progress == 0.4
    assert receive(job, other_runner, progress=0.6, report_id="r-1")["progress"] == 0.6, "another runner's key"
    with pytest.raises(InvalidReport) as refused:
        receive(other_job, runner, progress=0.1, report_id="r-1")
    assert str(refused.value) == f"report_id 'r-1' was already used for job #{job.id}."
    receive(job, runner, progress=0.7)
    assert receive(job, runner, progress=0.8)["progress"] == 0.8, "without a key every report applies"
    db.session.flush()
    kept = db.session.scalars(select(JobRunnerReport).order_by(JobRunnerReport.id))
    assert [(row.runner_id, row.report_id, row.training_job_id, row.response["progress"]) for row in kept] == [
        (runner.id, "r-1", job.id, 0.4), (other_runner.id, "r-1", job.id, 0.6)]
    transition(job, "canceled")
    assert receive(job, runner, status="canceled") == {
        "job": job.id, "status": "canceled", "progress": 0.8, "output_model_version_id": None,
        "note": f"Job #{job.id} is already canceled; nothing changed."}


def test_a_day_without_failures_has_a_failure_rate_of_zero_and_counts_a_job_finished_exactly_a_day_ago(
        db_session, monkeypatch):
    now = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(training_services, "utcnow", lambda: now)
    owner = make_user()
    for finished_at in (now - timedelta(hours=24), now - timedelta(hours=1)):
        make_training_job(owner, status="succeeded").finished_at = finished_at
    make_training_job(owner, status="failed").finished_at = now - timedelta(hours=24, microseconds=1)
    db.session.flush()
    summary = staff_summary()
    assert (summary.finished_last_day, summary.failure_rate) == (2, 0.0)


def test_an_unknown_status_is_refused_with_the_statuses_there_are(db_session):
    job = make_training_job(make_user(), status="running")
    with pytest.raises(InvalidReport) as refusal:
        transition(job, "paused")
    assert str(refusal.value) == "Unknown status 'paused'; use one of queued, running, succeeded, failed, canceled."
    assert job.status == "running"
