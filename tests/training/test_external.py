"""External jobs end to end against a local OpenAI-compatible fine-tuning server, through the worker's
own path (execute_job: claim, the real JobContext, finish), without HTTP to the console."""
from __future__ import annotations

import json
import logging

import openai
import pytest
import sqlalchemy as sa

from tests.conftest import login
from tests.factories import make_minion, make_provider, make_provider_config, make_training_job, make_user
from tests.training.fake_finetune_server import (
    FAILS, FAILURE_MESSAGE, GOOD_KEY, RUNS_FOREVER, SUCCEEDS, FakeFineTuneServer,
)
from webapp.artifacts import delete_artifact, new_key, write_stream
from webapp.datasets.models import Dataset
from webapp.extensions import db
from webapp.providers.models import AIModel, UserProviderConfig
from webapp.providers.openai_api import fine_tuning_refusal, supports_fine_tuning
from webapp.training import external
from webapp.training.models import TrainingJob, TrainingJobDataset, TrainingJobEvent
from webapp.training.runtime import execute_job
from webapp.training.services import JobError, NewJob, cancel_job, start_job

WORKER = "celery@test-host"
TRAIN_ROWS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Question {n}?"},
                  {"role": "assistant", "content": f"Answer {n}."}]}
    for n in range(12)
]
HYPERPARAMETERS = {"n_epochs": 2, "learning_rate_multiplier": 0.5, "batch_size": 4}
VALIDATION_ROWS = [{"prompt": "2+2?", "completion": "4"}, {"prompt": "Capital of France?", "completion": "Paris"}]


@pytest.fixture(scope="module")
def fake(app):
    """The fake fine-tuning server, on a loopback port the egress allowlist names (the client's transport checks it)."""
    with FakeFineTuneServer() as server:
        app.config["PROVIDER_HOST_ALLOWLIST"] = [server.host]
        yield server
        app.config["PROVIDER_HOST_ALLOWLIST"] = []


@pytest.fixture
def worker_settings(app, tmp_path):
    """Polls without pauses; the job heartbeat thread stays idle (the test's one connection is not shared)."""
    saved = {name: app.config.get(name) for name in
             ("EXTERNAL_JOB_POLL_SECONDS", "JOB_HEARTBEAT_SECONDS", "ARTIFACT_STORE_URL")}
    app.config.update(EXTERNAL_JOB_POLL_SECONDS=0, JOB_HEARTBEAT_SECONDS=3600,
                      ARTIFACT_STORE_URL=str(tmp_path / "artifacts"))
    yield
    app.config.update(saved)


def jsonl(rows) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def make_dataset(owner, name: str, rows) -> Dataset:
    stored = write_stream(new_key("datasets", str(owner.id), suffix=".jsonl"), [jsonl(rows)])
    dataset = Dataset(owner_user_id=owner.id, name=name, slug=name.lower().replace(" ", "-"), format="jsonl",
                      uri=stored.uri, size_bytes=stored.size_bytes, row_count=len(rows))
    db.session.add(dataset)
    db.session.flush()
    return dataset


def fake_provider_minion(fake, model_key: str = SUCCEEDS, api_key: str = GOOD_KEY):
    """A new user with a key for the fake provider ("Fake AI") and a minion on its model ``model_key``."""
    owner = make_user()
    provider = make_provider(name="Fake AI", api_style="openai", default_base_url=fake.url("/v1"),
                             capabilities=["chat", "fine_tuning"])
    make_provider_config(owner, provider, api_key=api_key)
    model = AIModel(model_type="external", provider_id=provider.id, model_key=model_key, name=model_key,
                    capabilities=["chat", "fine_tuning"])
    db.session.add(model)
    db.session.flush()
    return owner, make_minion(owner, model=model)


def external_job(fake, model_key: str = SUCCEEDS, api_key: str = GOOD_KEY, validation: bool = True) -> TrainingJob:
    """A queued external job of a new user on a fake provider, committed as the console would leave it."""
    owner, minion = fake_provider_minion(fake, model_key, api_key)
    model = minion.model
    links = [TrainingJobDataset(dataset=make_dataset(owner, "Support answers", TRAIN_ROWS), split="train")]
    if validation:
        links.append(TrainingJobDataset(dataset=make_dataset(owner, "Held out", VALIDATION_ROWS), split="validation"))
    job = make_training_job(owner, minion=minion, job_type="external", provider_id=model.provider_id,
                            base_model_id=model.id, datasets=links, hyperparameters=HYPERPARAMETERS)
    db.session.commit()
    return job


def provider_job_of(fake, job: TrainingJob):
    return fake.state.jobs[db.session.get(TrainingJob, job.id).external_job_id]


def mirrored_messages(job: TrainingJob) -> list[str]:
    return list(db.session.scalars(
        sa.select(TrainingJobEvent.message).where(TrainingJobEvent.training_job_id == job.id,
                                                  TrainingJobEvent.message.like("Fake AI: %"))
        .order_by(TrainingJobEvent.id)))


def test_an_external_job_fine_tunes_at_the_provider_and_mirrors_every_event_once(app, client, fake,
                                                                               worker_settings):
    job = external_job(fake)

    assert execute_job(job.id, WORKER) == "succeeded"

    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    at_provider = provider_job_of(fake, job)
    assert job.status == "succeeded" and at_provider.status == "succeeded"
    assert job.output_model_version.external_model_id == at_provider.fine_tuned_model
    assert job.minion.model_version_id == job.output_model_version_id
    # The splits went up as chat JSONL, the hyperparameters as the supervised method's.
    files = fake.state.files
    assert files[at_provider.training_file]["content"] == jsonl(TRAIN_ROWS)
    assert [json.loads(line) for line in files[at_provider.validation_file]["content"].splitlines()] == [
        {"messages": [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["completion"]}]}
        for row in VALIDATION_ROWS
    ]
    assert at_provider.hyperparameters == HYPERPARAMETERS
    # Every provider event, oldest first, exactly once, although each poll brought more than a page.
    assert mirrored_messages(job) == [f"Fake AI: {event['message']}" for event in at_provider.events]
    events_path = f"/v1/fine_tuning/jobs/{at_provider.id}/events"
    event_reads = [path for _, path, _ in fake.state.requests if path.startswith(events_path)]
    assert any("after=" in path for path in event_reads)
    # Metrics reach the chart's event stream, the job and the version.
    assert job.metrics["train_loss"] == round(2.0 / 24, 4)
    assert job.output_model_version.metrics["valid_loss"] == round(round(2.0 / 24, 4) * 1.1, 4)
    assert job.output_model_version.metrics["trained_tokens"] == 4800
    steps = db.session.scalars(sa.select(TrainingJobEvent.progress).where(
        TrainingJobEvent.training_job_id == job.id, TrainingJobEvent.message.like("Fake AI: Step %"))).all()
    assert steps == sorted(steps) and 0 < steps[0] < steps[-1] < 1
    # The owner sees the provider's model id on the job's page.
    login(client, job.user)
    assert at_provider.fine_tuned_model in client.get(f"/jobs/{job.id}").get_data(as_text=True)


def test_a_provider_failure_keeps_the_providers_message(app, db_session, fake, worker_settings):
    job = external_job(fake, model_key=FAILS)

    assert execute_job(job.id, WORKER).startswith("failed")

    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    assert job.status == "failed"
    assert FAILURE_MESSAGE in job.error_message
    assert f"Fake AI: {FAILURE_MESSAGE}" in mirrored_messages(job)


def test_cancel_in_the_console_cancels_the_provider_job(app, db_session, fake, worker_settings, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=external.__name__)
    job = external_job(fake, model_key=RUNS_FOREVER, validation=False)
    owner = job.user
    naps = []

    def user_cancels_while_the_worker_waits(seconds):
        naps.append(seconds)
        if len(naps) == 3:
            cancel_job(db.session.get(TrainingJob, job.id), owner)
            db.session.commit()

    app.config["EXTERNAL_JOB_POLL_SECONDS"] = 1
    monkeypatch.setattr(external.time, "sleep", user_cancels_while_the_worker_waits)

    assert execute_job(job.id, WORKER) == "canceled"

    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    at_provider = provider_job_of(fake, job)
    assert job.status == "canceled"
    assert at_provider.status == "cancelled"
    assert ("POST", f"/v1/fine_tuning/jobs/{at_provider.id}/cancel") in [(m, p) for m, p, _ in fake.state.requests]
    assert f"job {job.id}: provider job {at_provider.id} cancelled" in caplog.messages


def test_a_job_taken_over_resumes_the_provider_job_without_repeating_events(app, db_session, fake, worker_settings):
    job = external_job(fake)
    # A first worker created the provider job and mirrored its first events, then was lost.
    client = openai.OpenAI(api_key=GOOD_KEY, base_url=fake.url("/v1"), max_retries=0)
    upload = client.files.create(file=("train.jsonl", jsonl(TRAIN_ROWS)), purpose="fine-tune")
    started = client.fine_tuning.jobs.create(model=SUCCEEDS, training_file=upload.id)
    client.fine_tuning.jobs.retrieve(started.id)
    already = fake.state.jobs[started.id].events[:2]
    job.external_job_id, job.external_events_cursor = started.id, already[-1]["id"]
    db.session.commit()
    jobs_before = len(fake.state.jobs)

    assert execute_job(job.id, WORKER) == "succeeded"

    assert len(fake.state.jobs) == jobs_before
    at_provider = fake.state.jobs[started.id]
    assert mirrored_messages(job) == [f"Fake AI: {event['message']}" for event in at_provider.events[2:]]


@pytest.mark.parametrize("api_key", [GOOD_KEY, "sk-test-WrongKey9876543210zyxwvuABCD"])
def test_the_api_key_is_in_no_log_event_error_or_column(app, db_session, fake, worker_settings, caplog, api_key):
    caplog.set_level(logging.DEBUG)
    job = external_job(fake, api_key=api_key)

    outcome = execute_job(job.id, WORKER)

    db.session.expire_all()
    job = db.session.get(TrainingJob, job.id)
    if api_key == GOOD_KEY:
        assert outcome == "succeeded"
    else:  # the provider echoed the wrong key in its 401: the job keeps the message, not the key
        assert outcome.startswith("failed") and "HTTP 401" in job.error_message and "[redacted]" in job.error_message
    fragment = api_key[8:20]
    assert caplog.records, "the run logs something"
    for record in caplog.records:
        assert fragment not in record.getMessage() and fragment not in str(record.exc_text or "")
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(sa.select(table)):
            for column, value in row._mapping.items():
                if column == "api_key_ciphertext":
                    continue
                assert fragment not in str(value), f"{table.name}.{column} holds the key"


def test_only_providers_with_an_openai_fine_tuning_api_take_external_jobs(app, db_session):
    openai_style = make_provider(api_style="openai", capabilities=["chat", "fine_tuning"])
    chat_only = make_provider(api_style="openai", capabilities=["chat"])
    google = make_provider(name="Gemini", api_style="google", capabilities=["chat", "fine_tuning"])
    assert supports_fine_tuning(openai_style)
    assert not supports_fine_tuning(chat_only)
    assert not supports_fine_tuning(google)

    def model(provider, capabilities):
        return AIModel(model_type="external", provider=provider, model_key="m", name="M", capabilities=capabilities)

    assert fine_tuning_refusal(model(openai_style, ["chat", "fine_tuning"])) is None
    assert "Gemini offers no fine-tuning" in fine_tuning_refusal(model(google, ["chat", "fine_tuning"]))
    assert "does not fine-tune" in fine_tuning_refusal(model(openai_style, ["chat"]))


def test_a_job_on_a_provider_without_fine_tuning_is_refused_when_it_is_created(app, db_session, fake):
    owner = make_user()
    gemini = make_provider(name="Gemini", api_style="google", capabilities=["chat", "fine_tuning"])
    make_provider_config(owner, gemini, api_key="g-key-0123456789")
    model = AIModel(model_type="external", provider_id=gemini.id, model_key="gemini-pro", name="Gemini Pro",
                    capabilities=["chat", "fine_tuning"])
    db.session.add(model)
    db.session.flush()
    minion = make_minion(owner, model=model)
    train = make_dataset(owner, "Answers", TRAIN_ROWS)

    with pytest.raises(JobError, match="Gemini offers no fine-tuning through an OpenAI-compatible API"):
        start_job(owner, NewJob(minion=minion, model=model, train=train, validation=None, hyperparameters={}))
    assert db.session.scalar(sa.select(sa.func.count()).select_from(TrainingJob).where(
        TrainingJob.user_id == owner.id)) == 0


def test_polls_that_fail_for_a_while_are_retried_and_too_many_fail_the_job(app, db_session, fake, worker_settings):
    app.config["EXTERNAL_JOB_MAX_POLL_FAILURES"] = 3
    try:
        fake.state.outages = 2
        recovered = external_job(fake)
        assert execute_job(recovered.id, WORKER) == "succeeded"
        warnings = db.session.scalars(sa.select(TrainingJobEvent.message).where(
            TrainingJobEvent.training_job_id == recovered.id, TrainingJobEvent.level == "warning")).all()
        assert [w.split(":")[0] for w in warnings] == ["Polling failed (1 of 3 in a row), trying again",
                                                       "Polling failed (2 of 3 in a row), trying again"]

        fake.state.outages = 3
        lost = external_job(fake)
        assert execute_job(lost.id, WORKER).startswith("failed")
        db.session.expire_all()
        assert "Fake AI refused the request (HTTP 503): The server is overloaded" in \
            db.session.get(TrainingJob, lost.id).error_message
    finally:
        fake.state.outages = 0
        app.config["EXTERNAL_JOB_MAX_POLL_FAILURES"] = 5


def test_a_job_without_a_saved_key_fails_with_what_to_do(app, db_session, fake, worker_settings):
    job = external_job(fake)
    config = db.session.scalar(sa.select(UserProviderConfig).where(UserProviderConfig.user_id == job.user_id))
    config.api_key_ciphertext = None
    db.session.commit()

    assert execute_job(job.id, WORKER).startswith("failed")

    db.session.expire_all()
    assert db.session.get(TrainingJob, job.id).error_message == (
        "No Fake AI API key is saved for this account; add one on the Providers page and retry.")


def test_a_dataset_missing_from_the_store_fails_the_job_with_its_name(app, db_session, fake, worker_settings):
    job = external_job(fake, validation=False)
    train = job.datasets[0].dataset
    delete_artifact(train.uri)

    assert execute_job(job.id, WORKER).startswith("failed")

    db.session.expire_all()
    assert db.session.get(TrainingJob, job.id).error_message.startswith(
        "Dataset Support answers cannot be read from the artifact store (FileNotFoundError")
    assert not fake.state.jobs.get(db.session.get(TrainingJob, job.id).external_job_id or "")
