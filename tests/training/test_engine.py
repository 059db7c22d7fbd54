"""The engine without a broker: claim, run, report, finish, cancel, sweep, start (quotas), and the trainer's learning."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import select

from tests.factories import (
    make_ai_model, make_minion, make_plan, make_provider, make_provider_config, make_subscription, make_training_job,
    make_usage, make_user,
)
from webapp.accounts.models import AuditEvent
from tests.training.engine_helpers import make_dataset, queue_internal_job
from webapp.billing.models import UsageRecord
from webapp.db import utcnow
from webapp.extensions import db
from webapp.mail import outbox
from webapp.minions.models import MinionXpEvent
from webapp.quotas import QuotaExceeded
from webapp.seed.intents import intent_rows
from webapp.training import internal, reads, runtime, services
from webapp.training.models import TrainingJob, TrainingJobEvent
from webapp.training.runtime import JobContext, JobFailed, TrainingOutcome, execute_job, trainer_for


@pytest.fixture(autouse=True)
def quiet_heartbeat_thread(app):
    """The test shares one connection: the trainer's own reports heartbeat, the thread stays asleep."""
    old = app.config["JOB_HEARTBEAT_SECONDS"]
    app.config["JOB_HEARTBEAT_SECONDS"] = 3600
    yield
    app.config["JOB_HEARTBEAT_SECONDS"] = old


def events_of(job_id: int) -> list[str]:
    return list(db.session.scalars(select(TrainingJobEvent.message)
                                   .where(TrainingJobEvent.training_job_id == job_id).order_by(TrainingJobEvent.id)))


def test_an_internal_job_learns_and_feeds_the_version_xp_usage_and_mail(app, db_session):
    owner = make_user()
    minion = make_minion(owner)
    job = queue_internal_job(owner, minion, epochs=5)
    assert job.status == "queued" and job.dispatched_at is not None

    assert execute_job(job.id, "celery@test") == "succeeded"

    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    assert job.status == "succeeded" and job.progress == 1.0 and job.worker_name == "celery@test"
    # It learned: the validation split (rows the trainer never saw) beats always answering the commonest team.
    assert job.metrics["val_accuracy"] > job.metrics["baseline_accuracy"] + 0.3
    epochs = [event for event in db.session.scalars(select(TrainingJobEvent).where(
        TrainingJobEvent.training_job_id == job.id, TrainingJobEvent.message.like("Epoch %")))]
    assert [event.metrics["step"] for event in epochs] == [1, 2, 3, 4, 5]
    assert all({"train_loss", "val_loss", "val_accuracy"} <= set(event.metrics) for event in epochs)
    assert epochs[-1].metrics["val_loss"] < epochs[0].metrics["val_loss"]
    version = job.output_model_version
    assert version.model_id == minion.model_id and version.metrics["val_accuracy"] == job.metrics["val_accuracy"]
    fitted = internal.load_model(version.artifact_uri)
    assert list(fitted.predict(["I was charged twice for my subscription", "the app crashes when I open the editor"])) \
        == ["billing", "technical"]
    assert minion.model_version_id == version.id and minion.xp == 150
    assert db.session.scalar(select(MinionXpEvent.training_job_id).where(MinionXpEvent.minion_id == minion.id)) == job.id
    minutes = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == owner.id)).all()
    assert [(record.metric, record.quantity) for record in minutes] == [("training_minutes", 1)]
    mail = outbox(app)[-1]
    assert mail["To"] == owner.email and "succeeded" in mail["Subject"]
    assert f"http://console.test/jobs/{job.id}" in mail.get_content()


def test_a_job_delivered_twice_runs_once(db_session):
    job = queue_internal_job(epochs=1)
    assert execute_job(job.id, "celery@one") == "succeeded"
    assert execute_job(job.id, "celery@two").startswith("not claimed")
    assert sum(message.startswith("Started on") for message in events_of(job.id)) == 1
    assert db.session.get(TrainingJob, job.id).worker_name == "celery@one"


def test_without_a_validation_split_a_fifth_of_train_is_held_out(db_session):
    job = queue_internal_job(epochs=2, validation_rows=0)
    assert execute_job(job.id, "celery@test") == "succeeded"
    assert any("20% of the train split held out" in message for message in events_of(job.id))


def test_hyperparameters_are_honoured(db_session):
    job = queue_internal_job(epochs=3, batch_size=16, learning_rate=0.2)
    assert execute_job(job.id, "celery@test") == "succeeded"
    assert sum(message.startswith("Epoch ") for message in events_of(job.id)) == 3
    assert internal.settings({"epochs": 3, "batch_size": 16, "learning_rate": 0.2}) == \
        {"epochs": 3, "batch_size": 16, "learning_rate": 0.2, "l2": 0.0001}
    with pytest.raises(JobFailed, match="Epochs must be a number from 1 to 50"):
        internal.settings({"epochs": 500})


def test_cancel_reaches_the_trainer_at_its_next_step(db_session, monkeypatch):
    owner = make_user()
    job = queue_internal_job(owner, epochs=8)
    real_score = internal.score

    def score_then_cancel(*args):
        # The owner cancels in the console while epoch 2 is being scored.
        metrics = real_score(*args)
        if len(events_of(job.id)) >= 4:
            with db.session.no_autoflush:
                services.cancel_job(db.session.get(TrainingJob, job.id), owner)
            db.session.commit()
        return metrics

    monkeypatch.setattr(internal, "score", score_then_cancel)
    assert execute_job(job.id, "celery@test") == "canceled"
    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    messages = events_of(job.id)
    assert job.status == "canceled" and job.output_model_version_id is None
    assert sum(message.startswith("Epoch ") for message in messages) < 8
    assert messages[-1] == "Stopped on celery@test after the cancel"


def test_a_failing_trainer_fails_the_job_with_its_message_and_a_mail(app, db_session):
    job = queue_internal_job(epochs=1)
    job.hyperparameters = {"epochs": 99}  # as a third-party tool could have written it
    db.session.commit()
    assert execute_job(job.id, "celery@test").startswith("failed")
    job = db.session.get(TrainingJob, job.id)
    assert job.status == "failed" and job.error_message.startswith("Epochs must be a number from 1 to 50")
    assert "failed" in outbox(app)[-1]["Subject"]


def test_an_external_job_fails_clearly_until_its_trainer_is_installed(db_session, monkeypatch):
    monkeypatch.setitem(runtime.TRAINERS, "external", "webapp.training.no_such_trainer:run")
    with pytest.raises(JobFailed, match="External training is not available"):
        trainer_for("external")
    assert runtime.hyperparameters_for("external") == []


def test_the_sweeper_dispatches_unclaimed_jobs_again_and_releases_lost_ones(app, db_session):
    owner = make_user()
    stale = queue_internal_job(owner, epochs=1)
    stale.dispatched_at = utcnow() - timedelta(hours=1)
    lost = queue_internal_job(owner, epochs=1)
    lost.max_attempts = 2
    db.session.commit()
    assert services.claim_job(lost.id, "celery@gone") == 1
    db.session.commit()
    # The worker went quiet long ago.
    lost = db.session.get(TrainingJob, lost.id, populate_existing=True)
    lost.heartbeat_at = utcnow() - timedelta(hours=1)
    db.session.commit()

    summary = services.sweep()
    assert (summary.dispatched_again, summary.queued_again, summary.failed_lost) == (1, 1, 0)
    assert stale.dispatched_at > utcnow() - timedelta(minutes=1)
    assert "No worker claimed the job in time; dispatched again" in events_of(stale.id)
    assert lost.status == "queued" and lost.worker_name is None
    assert "queued again for attempt 2 of 2" in events_of(lost.id)[-1]
    assert events_of(lost.id)[-1].startswith("Worker lost: celery@gone stopped heartbeating")

    # The lost worker wakes up: its lease is gone, so it writes nothing.
    ghost = JobContext(job_id=lost.id, worker_name="celery@gone", attempt=1)
    assert ghost.cancel_requested()
    with pytest.raises(runtime.LeaseLost):
        ghost.report(progress=0.5, message="still here")

    assert services.claim_job(lost.id, "celery@other") == 2
    db.session.commit()
    lost = db.session.get(TrainingJob, lost.id, populate_existing=True)
    lost.heartbeat_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    assert services.sweep().failed_lost == 1
    assert lost.status == "failed" and lost.error_message.startswith("Worker lost: celery@other stopped heartbeating")
    assert lost.error_message.endswith("after 2 of 2 attempts.")
    assert "failed" in outbox(app)[-1]["Subject"]


def test_the_sweeper_leaves_live_work_alone_and_counts_each_job_it_moves(app, db_session):
    long_ago = utcnow() - timedelta(hours=1)
    stale, fresh, lost, live = [queue_internal_job(epochs=1) for _ in range(2)], queue_internal_job(epochs=1), \
        [queue_internal_job(epochs=1) for _ in range(2)], queue_internal_job(epochs=1)
    for job in stale:
        job.dispatched_at = long_ago
    db.session.commit()
    for number, job in enumerate([*lost, live]):
        assert services.claim_job(job.id, f"celery@w{number}") == 1
        db.session.commit()
    for job in lost:
        db.session.get(TrainingJob, job.id, populate_existing=True).heartbeat_at = long_ago
    db.session.commit()
    fresh_dispatch = db.session.get(TrainingJob, fresh.id).dispatched_at

    summary = services.sweep()

    assert (summary.dispatched_again, summary.queued_again, summary.failed_lost) == (2, 2, 0)
    live = db.session.get(TrainingJob, live.id, populate_existing=True)
    assert (live.status, live.worker_name) == ("running", "celery@w2"), "a worker that heartbeats keeps its job"
    fresh = db.session.get(TrainingJob, fresh.id, populate_existing=True)
    assert fresh.dispatched_at == fresh_dispatch, "a job dispatched moments ago waits for its claim"
    for job in lost:
        job = db.session.get(TrainingJob, job.id, populate_existing=True)
        event = db.session.scalars(select(TrainingJobEvent).where(TrainingJobEvent.training_job_id == job.id)
                                   .order_by(TrainingJobEvent.id.desc())).first()
        assert job.status == "queued" and (event.level, event.progress) == ("warning", 0.0)


def test_a_sweep_with_nothing_due_changes_nothing(db_session):
    job = queue_internal_job(epochs=1)
    assert services.sweep() == services.SweepSummary()
    assert events_of(job.id) == [events_of(job.id)[0]]


def levels_and_messages(job_id: int) -> list[tuple[str, str]]:
    return list(db.session.execute(select(TrainingJobEvent.level, TrainingJobEvent.message)
                                   .where(TrainingJobEvent.training_job_id == job_id).order_by(TrainingJobEvent.id)))


def test_the_sweeper_takes_due_jobs_a_batch_at_a_time_in_id_order(app, db_session, monkeypatch):
    monkeypatch.setattr(services, "SWEEP_BATCH", 2)
    now, long_ago = utcnow(), utcnow() - timedelta(hours=1)
    unclaimed_since = now - timedelta(seconds=app.config["JOB_DISPATCH_TIMEOUT_SECONDS"])
    quiet_since = now - timedelta(seconds=app.config["JOB_LEASE_SECONDS"])
    owner = make_user()

    def job(status: str = "queued", **fields) -> TrainingJob:
        return make_training_job(owner, status, **fields)

    # Jobs that are not due come first: none of them may take a place in a batch.
    job(dispatched_at=unclaimed_since)  # its claim time ends this very moment
    job("failed", dispatched_at=long_ago, heartbeat_at=long_ago)
    job(dispatched_at=now, heartbeat_at=long_ago)  # queued again by an earlier sweep
    job("running", dispatched_at=long_ago, heartbeat_at=quiet_since, worker_name="celery@w")  # heard just now
    job("running", dispatched_at=long_ago, heartbeat_at=now, worker_name="celery@w")
    # Due jobs, each batch's ids in order whatever their times.
    unclaimed = [job(dispatched_at=long_ago + timedelta(minutes=1)), job(dispatched_at=None),
                 job(dispatched_at=long_ago)]
    lost = [job("running", heartbeat_at=long_ago + timedelta(minutes=delay), worker_name=f"celery@w{delay}",
                attempts=attempts, max_attempts=2, progress=0.7) for delay, attempts in ((0, 2), (1, 2), (-1, 1))]
    db.session.commit()

    assert services.sweep(now) == services.SweepSummary(dispatched_again=2, queued_again=0, failed_lost=2)
    assert levels_and_messages(unclaimed[0].id) == [
        ("warning", "No worker claimed the job in time; dispatched again")]
    assert levels_and_messages(unclaimed[1].id) == [], "a job never dispatched is dispatched without a warning"
    assert [db.session.get(TrainingJob, job.id).status for job in lost] == ["failed", "failed", "running"]
    assert db.session.get(TrainingJob, unclaimed[2].id).dispatched_at == long_ago

    assert services.sweep(now) == services.SweepSummary(dispatched_again=1, queued_again=1, failed_lost=0)
    again = db.session.get(TrainingJob, lost[2].id)
    assert (again.status, again.worker_name, again.heartbeat_at, again.progress) == ("queued", None, None, 0.0)
    assert services.sweep(now) == services.SweepSummary()


def test_a_job_is_dispatched_again_or_released_only_while_it_is_still_due(db_session):
    since, long_ago, owner = utcnow(), utcnow() - timedelta(hours=1), make_user()
    waiting = make_training_job(owner, dispatched_at=since)
    heard = make_training_job(owner, "running", dispatched_at=long_ago, heartbeat_at=since, worker_name="celery@w")
    released = make_training_job(owner, dispatched_at=since, heartbeat_at=long_ago)
    assert not services.dispatch_again(waiting, since)
    assert not services.dispatch_again(heard, since)
    assert not services.release_lost(heard, since)
    assert not services.release_lost(released, since)
    assert [(job.status, job.dispatched_at) for job in (waiting, heard, released)] == [
        ("queued", since), ("running", long_ago), ("queued", since)]


def test_a_lost_job_whose_worker_had_no_name_fails_blaming_its_worker_where_it_stopped(db_session):
    heard = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone.utc)
    job = make_training_job(make_user(), "running", heartbeat_at=heard, attempts=2, max_attempts=2, progress=0.4)
    assert services.release_lost(job, heard + timedelta(seconds=1))
    lost = "Worker lost: its worker stopped heartbeating (last heard 2026-03-04 05:06:07 UTC), after 2 of 2 attempts."
    assert (job.status, job.error_message, job.progress) == ("failed", lost, 0.4)
    db.session.flush()
    event = db.session.scalars(select(TrainingJobEvent).where(TrainingJobEvent.training_job_id == job.id)).one()
    assert (event.level, event.message, event.progress) == ("error", lost, 0.4), "the failure, where the job stopped"


def held_job(owner=None, **fields) -> JobContext:
    """A job "celery@test" claimed and holds, as its trainer ends it."""
    owner = owner or make_user()
    job = make_training_job(owner, minion=make_minion(owner), name="Night run", **fields)
    db.session.commit()
    ctx = JobContext(job_id=job.id, worker_name="celery@test", attempt=services.claim_job(job.id, "celery@test"))
    db.session.commit()
    return ctx


def last_event(job_id: int) -> tuple:
    event = db.session.scalars(select(TrainingJobEvent).where(TrainingJobEvent.training_job_id == job_id)
                               .order_by(TrainingJobEvent.id.desc())).first()
    return event.level, event.message, event.progress, event.metrics


def test_a_held_job_that_succeeds_gets_its_version_an_event_with_the_metrics_and_one_mail(app, db_session):
    owner = make_user()
    ctx = held_job(owner, metrics={"train_loss": 0.5})
    job = db.session.get(TrainingJob, ctx.job_id)
    sent = len(outbox(app))
    outcome = TrainingOutcome(metrics={"val_loss": 0.123456, "val_accuracy": 0.8}, artifact_uri="file:///fitted.joblib")
    assert services.finish_held_job(ctx, "succeeded", outcome=outcome) == "succeeded"

    assert (job.status, job.progress, job.metrics) == (
        "succeeded", 1.0, {"train_loss": 0.5, "val_loss": 0.123456, "val_accuracy": 0.8})
    version = job.output_model_version
    assert (version.model_id, version.version, version.training_job_id, version.artifact_uri, version.external_model_id,
            version.metrics) == (job.minion.model_id, f"job-{job.id}", job.id, "file:///fitted.joblib", None,
                                 {"val_loss": 0.123456, "val_accuracy": 0.8})
    assert last_event(job.id) == (
        "info", f"Succeeded: version job-{job.id} (val_accuracy 0.8, val_loss 0.1235)", 1.0, {})
    (mail,) = outbox(app)[sent:]
    assert (mail["To"], mail["Subject"]) == (owner.email, f"Training job #{job.id} succeeded: Night run")
    assert f"Hello {owner.display_name}," in mail.get_content()
    assert f"It produced model version job-{job.id}." in mail.get_content()
    assert f"http://console.test/jobs/{job.id}" in mail.get_content()

    quiet = held_job(metrics={"train_loss": 0.5})
    outcome = TrainingOutcome(metrics={}, external_model_id="ft:acme:night-run")
    assert services.finish_held_job(quiet, "succeeded", outcome=outcome) == "succeeded"
    assert last_event(quiet.job_id)[1] == f"Succeeded: version job-{quiet.job_id}", "no metrics, no parentheses"
    version = db.session.get(TrainingJob, quiet.job_id).output_model_version
    assert (version.external_model_id, version.artifact_uri, version.metrics) == (
        "ft:acme:night-run", None, {"train_loss": 0.5})


def test_a_held_job_that_fails_keeps_the_trainers_words_and_mails_them(app, db_session):
    owner = make_user()
    ctx = held_job(owner, progress=0.25)
    sent = len(outbox(app))
    assert services.finish_held_job(ctx, "failed", error="The train split is empty.") == "failed"
    job = db.session.get(TrainingJob, ctx.job_id)
    assert (job.status, job.error_message, job.progress) == ("failed", "The train split is empty.", 0.25)
    assert last_event(job.id) == ("error", "The train split is empty.", 0.25, {})
    (mail,) = outbox(app)[sent:]
    assert (mail["To"], mail["Subject"]) == (owner.email, f"Training job #{job.id} failed: Night run")
    assert "What went wrong: The train split is empty." in mail.get_content()


def test_a_held_job_that_stops_canceled_says_where_and_mails_nobody(app, db_session):
    owner = make_user()
    stopped_by_trainer, canceled_in_console = held_job(owner, progress=0.25), held_job(owner, progress=0.5)
    services.cancel_job(db.session.get(TrainingJob, canceled_in_console.job_id), owner)
    db.session.commit()
    sent = len(outbox(app))
    for ctx, progress in ((stopped_by_trainer, 0.25), (canceled_in_console, 0.5)):
        assert services.finish_held_job(ctx, "canceled") == "canceled"
        assert db.session.get(TrainingJob, ctx.job_id).status == "canceled"
        assert last_event(ctx.job_id) == ("warning", "Stopped on celery@test after the cancel", progress, {})
    assert outbox(app)[sent:] == []


def test_a_worker_that_lost_its_job_writes_nothing_at_the_end(app, db_session):
    ctx = held_job(progress=0.25)
    job = db.session.get(TrainingJob, ctx.job_id)
    written = last_event(job.id)
    for ghost in (JobContext(job_id=job.id, worker_name="celery@other", attempt=ctx.attempt),
                  JobContext(job_id=job.id, worker_name="celery@test", attempt=ctx.attempt + 1),
                  JobContext(job_id=job.id + 1000, worker_name="celery@test", attempt=ctx.attempt)):
        assert services.finish_held_job(ghost, "succeeded", outcome=TrainingOutcome(metrics={})) == \
            "lease lost before the end"
    assert (job.status, last_event(job.id)) == ("running", written)
    # The sweeper failed the job on its last attempt (the lease still names this worker, who was only slow):
    # the worker, told to stop, ends it neither as succeeded nor as canceled, nor mails the owner again.
    services.fail(job, "Worker lost")
    db.session.commit()
    written, sent = last_event(job.id), len(outbox(app))
    assert services.finish_held_job(ctx, "succeeded", outcome=TrainingOutcome(metrics={})) == "already failed"
    assert services.finish_held_job(ctx, "canceled") == "already failed"
    assert (job.status, last_event(job.id), outbox(app)[sent:]) == ("failed", written, [])


def test_reported_progress_is_clamped_and_a_log_line_or_metrics_make_one_event(db_session):
    job = make_training_job(make_user(), "running", progress=0.3, metrics={"loss": 2.0})
    services.record_progress(job, progress=1.5, message=None, level="info", metrics={})
    assert job.progress == 1.0
    services.record_progress(job, progress=None, message=None, level="info", metrics={})
    services.record_progress(job, progress=-0.5, message="Epoch 1", level="warning", metrics={})
    services.record_progress(job, progress=None, message=None, level="info", metrics={"loss": 1.5, "acc": 0.5})
    db.session.flush()
    assert (job.progress, job.metrics) == (0.0, {"loss": 1.5, "acc": 0.5})
    events = db.session.scalars(select(TrainingJobEvent).where(TrainingJobEvent.training_job_id == job.id)
                                .order_by(TrainingJobEvent.id))
    assert [(event.level, event.message, event.progress, event.metrics) for event in events] == [
        ("warning", "Epoch 1", 0.0, {}), ("info", "Metrics", 0.0, {"loss": 1.5, "acc": 0.5})]
    services.transition(job, "canceled")
    with pytest.raises(services.IllegalTransition, match="is canceled and cannot become updated"):
        services.record_progress(job, progress=0.5, message="Epoch 2", level="info", metrics={})


def test_a_lease_is_one_jobs_exact_worker_and_attempt(db_session):
    owner = make_user()
    job = make_training_job(owner, job_type="external", provider_id=make_provider().id)
    other = make_training_job(owner, "failed", worker_name="celery@w", attempts=1)
    assert services.claim_job(job.id, "celery@w") == 1
    assert services.claim_job(job.id, "celery@x") is None, "a running job is not claimed again"
    assert services.lease_state(job.id, "celery@w", 1) == "running"
    assert [services.lease_state(*lease) for lease in (
        (job.id, "celery@x", 1), (job.id, "celery@w", 2), (job.id + 1000, "celery@w", 1))] == [None, None, None]
    assert (services.job_type_of(job.id), services.job_type_of(other.id)) == ("external", "internal")


def test_only_a_jobs_holder_heartbeats_it_and_only_while_it_runs(db_session):
    owner, long_ago = make_user(), utcnow() - timedelta(hours=1)
    job = make_training_job(owner)
    other = make_training_job(owner, "running", worker_name="celery@w", attempts=1, heartbeat_at=long_ago)
    assert services.claim_job(job.id, "celery@w") == 1
    db.session.get(TrainingJob, job.id, populate_existing=True).heartbeat_at = long_ago
    db.session.flush()

    def heard() -> list:
        return [db.session.get(TrainingJob, one.id, populate_existing=True).heartbeat_at for one in (job, other)]

    assert not any(services.heartbeat(*lease) for lease in (
        (job.id, "celery@x", 1), (job.id, "celery@w", 2), (job.id + 1000, "celery@w", 1)))
    assert heard() == [long_ago, long_ago]
    assert services.heartbeat(job.id, "celery@w", 1) is True
    assert heard()[0] > long_ago + timedelta(minutes=59) and heard()[1] == long_ago
    services.transition(job, "canceled")
    db.session.flush()
    assert services.heartbeat(job.id, "celery@w", 1) is False


def test_heartbeats_do_not_make_a_console_edit_fail(db_session):
    owner = make_user()
    job = queue_internal_job(owner, epochs=1)
    attempt = services.claim_job(job.id, "celery@test")
    db.session.commit()
    job = db.session.get(TrainingJob, job.id, populate_existing=True)
    version = job.lock_version
    assert services.heartbeat(job.id, "celery@test", attempt)
    db.session.commit()
    assert db.session.get(TrainingJob, job.id, populate_existing=True).lock_version == version
    services.cancel_job(job, owner)
    db.session.commit()
    assert not services.heartbeat(job.id, "celery@test", attempt), "a canceled job's heartbeat tells the worker"


def test_starting_a_job_needs_a_verified_user_and_respects_every_quota(db_session):
    unverified = make_user(email_verified_at=None)
    minion = make_minion(unverified)
    train = make_dataset(unverified, 20, seed=1, name="T")
    new = services.NewJob(minion=minion, model=minion.model, train=train, validation=None, hyperparameters={})
    with pytest.raises(services.VerificationRequired) as refused:
        services.start_job(unverified, new)
    assert (str(refused.value), refused.value.status) == (
        "Confirm your email address before starting a training job.", 403)

    for quota, usage in (("training_jobs", None), ("concurrent_jobs", None), ("training_minutes", 30)):
        owner = make_user()
        make_subscription(owner, make_plan(quotas={quota: 1 if quota != "training_minutes" else 30}))
        minion = make_minion(owner)
        new = services.NewJob(minion=minion, model=minion.model, train=make_dataset(owner, 20, seed=1, name="T"),
                              validation=None, hyperparameters={})
        if usage:
            make_usage(owner, "training_minutes", usage)
        else:
            services.start_job(owner, new)
        with pytest.raises(QuotaExceeded) as refused:
            services.start_job(owner, new)
        assert refused.value.key == quota


def test_a_started_job_holds_the_choices_and_is_logged_audited_and_dispatched(app, db_session, monkeypatch):
    monkeypatch.setitem(app.config, "JOB_MAX_ATTEMPTS", 3)
    owner = make_user()
    # A reference model its provider serves still trains on the internal trainer, billed to no provider.
    model = make_ai_model(provider_id=make_provider().id)
    minion = make_minion(owner, model=model, name="Scout")
    train, validation = make_dataset(owner, 20, seed=1, name="Tickets"), make_dataset(owner, 10, seed=2, name="Held")
    before = utcnow()
    job = services.start_job(owner, services.NewJob(minion=minion, model=model, train=train, validation=validation,
                                                    hyperparameters={"epochs": 2.0}))
    assert (job.user_id, job.minion_id, job.base_model_id, job.job_type, job.provider_id, job.name, job.status,
            job.progress, job.hyperparameters, job.max_attempts) == (
        owner.id, minion.id, model.id, "internal", None, "Scout on Tickets", "queued", 0.0, {"epochs": 2.0}, 3)
    assert before <= job.queued_at <= job.dispatched_at <= utcnow()
    assert sorted((link.dataset_id, link.split) for link in job.datasets) == [
        (train.id, "train"), (validation.id, "validation")]
    assert [(event.level, event.message, event.progress) for event in db.session.scalars(
        select(TrainingJobEvent).where(TrainingJobEvent.training_job_id == job.id))] == [
        ("info", f"Queued by {owner.display_name}", 0.0)]
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "training_jobs",
                                                         AuditEvent.object_id == job.id)).one()
    assert (audit.action, audit.actor_id, audit.changes) == (
        "training_job.start", owner.id, {"minion": minion.id, "model": model.id, "job_type": "internal"})
    assert db.session.info[services.PENDING_DISPATCH] == {job.id}, "sent to the workers once committed"


def test_an_external_job_needs_the_owners_key_for_its_provider(db_session):
    owner = make_user()
    provider = make_provider(name="Acme AI", capabilities=["chat", "fine_tuning"])
    model = make_ai_model(model_type="external", provider_id=provider.id, capabilities=["chat", "fine_tuning"])
    new = services.NewJob(minion=make_minion(owner, model=model), model=model, validation=None, hyperparameters={},
                          train=make_dataset(owner, 20, seed=1, name="Tickets"))
    make_provider_config(make_user(), provider, api_key="sk-test-someone-elses-key")
    with pytest.raises(services.JobError) as refused:
        services.start_job(owner, new)
    assert (str(refused.value), refused.value.status) == ("Add your Acme AI API key on the Providers page first.", 409)
    make_provider_config(owner, provider, api_key="sk-test-1234567890")
    job = services.start_job(owner, new)
    assert (job.job_type, job.provider_id, job.status) == ("external", provider.id, "queued")


def preview_of(owner, minion) -> reads.JobPreview:
    """/jobs/new's preview for ``minion``'s model, as the page reads it."""
    choices = reads.job_choices(owner)
    return reads.job_preview(choices, next(model for model in choices.models if model.id == minion.model_id))


def test_training_minutes_that_block_refuse_a_job_and_minutes_billed_as_overage_do_not(db_session):
    for overage, refused in ((None, True), ({"training_minutes": {"per": 1, "cents": 10}}, False)):
        owner = make_user()
        make_subscription(owner, make_plan(quotas={"training_minutes": 30, **({"overage": overage} if overage else {})}))
        minion = make_minion(owner)
        make_usage(owner, "training_minutes", 45)
        new = services.NewJob(minion=minion, model=minion.model, train=make_dataset(owner, 20, seed=1, name="T"),
                              validation=None, hyperparameters={})
        preview = preview_of(owner, minion)
        if refused:
            assert preview.blocked == "You have no training minutes left this period."
            with pytest.raises(QuotaExceeded) as error:
                services.start_job(owner, new)
            assert error.value.key == "training_minutes"
        else:
            assert preview.blocked is None and preview.minutes_overage == "10 cents per minute past the limit"
            assert services.start_job(owner, new).status == "queued"


def test_the_preview_counts_what_is_left(db_session):
    owner = make_user()
    make_subscription(owner, make_plan(quotas={"training_jobs": 5, "training_minutes": 100, "concurrent_jobs": 2}))
    minion = make_minion(owner)
    make_usage(owner, "training_minutes", 40)
    queue_internal_job(owner, minion, epochs=1)
    preview = preview_of(owner, minion)
    assert (preview.jobs_left, preview.minutes_left, preview.concurrent_left) == (4, 60, 1)
    assert preview.job_type == "internal" and preview.provider_key is None and preview.blocked is None


def test_the_demo_task_has_no_dominant_answer():
    labels = [row["completion"] for row in intent_rows(200, 5)]
    assert 0.15 < np.mean(np.array(labels) == internal.majority(labels)) < 0.4


def test_the_holdout_takes_a_fifth_of_the_train_rows_in_a_fixed_shuffle():
    rows = internal.Split([f"p{i}" for i in range(10)], [f"l{i}" for i in range(10)])
    train, validation = internal.holdout(rows)
    assert (validation.prompts, validation.labels) == (["p7", "p8"], ["l7", "l8"])
    assert train.prompts == ["p1", "p5", "p3", "p4", "p2", "p0", "p9", "p6"]
    assert train.labels == ["l1", "l5", "l3", "l4", "l2", "l0", "l9", "l6"]
    # At least one row is held out, as long as one stays to train on.
    train, validation = internal.holdout(internal.Split(["a", "b"], ["x", "y"]))
    assert (train.prompts, train.labels, validation.prompts, validation.labels) == (["b"], ["y"], ["a"], ["x"])
    with pytest.raises(JobFailed) as refused:
        internal.holdout(internal.Split(["only"], ["one"]))
    assert str(refused.value) == ("The train split is too small to hold out a validation part; "
                                  "add a validation split.")
