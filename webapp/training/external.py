"""External jobs: fine-tuning at the user's provider through its OpenAI-compatible API.

The worker unseals the user's key here and nowhere else; it never logs it, and every
text that leaves this module (events, the job's error) has it scrubbed out. The
provider's job id is recorded as soon as the job exists, so a worker that takes the
job over after a lost one resumes polling it instead of starting (and paying for) a
second fine-tuning run; the newest mirrored provider event id is recorded with each
event, so no event is mirrored twice.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import openai
from flask import current_app
from sqlalchemy import select, update

from webapp.artifacts import open_artifact
from webapp.datasets.formats import read_examples
from webapp.extensions import db
from webapp.providers.crypto import ApiKeyUnreadable, decrypt_api_key
from webapp.providers.egress import EgressRefused
from webapp.providers.models import UserProviderConfig
from webapp.providers.openai_api import openai_client
from webapp.providers.services import redact_secret
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob
from webapp.training.runtime import (
    HyperParameter, JobCanceled, JobContext, JobFailed, LeaseLost, TrainingOutcome,
)

log = logging.getLogger(__name__)

HYPERPARAMETERS = [
    HyperParameter("n_epochs", "Epochs", int, 1, 50, 3,
                   "Full passes over the training split."),
    HyperParameter("learning_rate_multiplier", "Learning rate multiplier", float, 0.01, 10.0, 1.0,
                   "Scales the provider's base learning rate; lower it if the model overfits."),
    HyperParameter("batch_size", "Batch size", int, 1, 256, 8,
                   "Examples per update; larger batches update less often, with less noise."),
]

# Provider status -> (our progress while in it, what the event log says when it is reached).
PROVIDER_PHASES = {
    "validating_files": (0.02, "The provider is validating the uploaded files."),
    "queued": (0.05, "The provider queued the fine-tuning job."),
    "running": (0.05, "The provider started fine-tuning."),
}
PROVIDER_LEVELS = {"info": "info", "warn": "warning", "warning": "warning", "error": "error"}
EVENT_PAGE_SIZE = 100
ERROR_MAX_CHARS = 500
# Failures that a later poll may not see again (network, timeouts, rate limits, the provider's 5xx).
TRANSIENT_ERRORS = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)
# Training files are built on disk past this size rather than in memory.
SPOOL_BYTES = 8 * 1024 * 1024


def run_external_job(job_id: int, ctx: JobContext) -> TrainingOutcome:
    """Fine-tune the job's base model at its provider, mirroring status, events and metrics into the job."""
    job = db.session.get(TrainingJob, job_id)
    config = provider_config(job)
    try:
        api_key = decrypt_api_key(config, purpose="fine_tuning")
    except ApiKeyUnreadable as error:
        raise JobFailed(f"The stored {job.provider.name} key cannot be used ({error}); "
                        "replace it on the Providers page and retry.") from None
    settings = current_app.config
    end_transaction()  # with the key's audit row
    with openai_client(config, api_key, settings["PROVIDER_API_TIMEOUT_SECONDS"]) as client:
        run = ProviderRun(client, ctx, job.id, job.provider.name, api_key)
        try:
            return run.to_the_end(settings["EXTERNAL_JOB_POLL_SECONDS"], settings["EXTERNAL_JOB_MAX_POLL_FAILURES"])
        except EgressRefused as error:
            raise JobFailed(f"Cannot connect to {run.provider_name}: {error}.") from None
        except openai.OpenAIError as error:
            # "from None": the original exception's text may echo the key into a logged traceback.
            raise JobFailed(run.scrub(describe(error, run.provider_name))) from None


def provider_config(job: TrainingJob) -> UserProviderConfig:
    """The job owner's enabled config with a key for the job's provider; JobFailed says what to fix."""
    config = db.session.scalar(select(UserProviderConfig).where(
        UserProviderConfig.user_id == job.user_id, UserProviderConfig.provider_id == job.provider_id,
    ))
    if config is None or config.api_key_ciphertext is None:
        raise JobFailed(f"No {job.provider.name} API key is saved for this account; "
                        "add one on the Providers page and retry.")
    if not config.is_enabled or not job.provider.is_enabled:
        raise JobFailed(f"{job.provider.name} is disabled for this account; enable it and retry.")
    return config


def describe(error: openai.OpenAIError, provider_name: str) -> str:
    """The provider's own words for a failed request, prefixed with what kind of failure it was."""
    if isinstance(error, openai.APITimeoutError):
        return f"{provider_name} did not answer in time."
    if isinstance(error, openai.APIConnectionError):
        return f"Cannot connect to {provider_name}: {error}"
    if isinstance(error, openai.APIStatusError):
        # The library hands over the "error" object of the body when there is one.
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or error.message
        return f"{provider_name} refused the request (HTTP {error.status_code}): {message}"
    return f"{provider_name}: {error}"


@dataclass
class ProviderRun:
    """One worker's run of one external job, from upload (or resumption) to the provider's last word."""

    client: openai.OpenAI
    ctx: JobContext
    job_id: int
    provider_name: str
    api_key: str
    provider_status: str | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def job(self) -> TrainingJob:
        return db.session.get(TrainingJob, self.job_id)

    def scrub(self, text: str) -> str:
        return redact_secret(text, self.api_key)[:ERROR_MAX_CHARS]

    def to_the_end(self, poll_seconds: float, max_poll_failures: int) -> TrainingOutcome:
        provider_job_id = self.job.external_job_id
        if provider_job_id:
            self.ctx.report(message=f"Resuming fine-tuning job {provider_job_id} at {self.provider_name}.")
        else:
            provider_job_id = self.start()
        try:
            return self.poll(provider_job_id, poll_seconds, max_poll_failures)
        except LeaseLost:
            raise  # the job's new holder resumes the provider's job
        except JobCanceled:
            if self.provider_status != "cancelled":
                self.cancel_at_provider(provider_job_id)
            raise

    def poll(self, provider_job_id: str, poll_seconds: float, max_poll_failures: int) -> TrainingOutcome:
        failures = 0
        while True:
            self.stop_if_canceled()
            try:
                provider_job = self.client.fine_tuning.jobs.retrieve(provider_job_id)
                self.mirror_events(provider_job_id)
            except TRANSIENT_ERRORS as error:
                failures += 1
                if failures >= max_poll_failures:
                    raise
                self.ctx.report(level="warning", message=self.scrub(
                    f"Polling failed ({failures} of {max_poll_failures} in a row), trying again: "
                    f"{describe(error, self.provider_name)}"))
            else:
                failures = 0
                outcome = self.follow(provider_job)
                if outcome is not None:
                    return outcome
            self.wait(poll_seconds)

    # --- starting -----------------------------------------------------------------------------------

    def start(self) -> str:
        """Upload the splits, create the provider's job and record its id; the id."""
        training_file = self.upload("train")
        if training_file is None:
            raise JobFailed("The job has no training dataset; add one with the train split.")
        validation_file = self.upload("validation")
        job = self.job
        hyperparameters = {
            spec.name: spec.type(job.hyperparameters[spec.name])
            for spec in HYPERPARAMETERS if job.hyperparameters.get(spec.name) is not None
        }
        model = job.base_model.model_key
        end_transaction()
        provider_job = self.client.fine_tuning.jobs.create(
            model=model,
            training_file=training_file,
            validation_file=validation_file or openai.omit,
            method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            suffix=f"minion-job-{job.id}",
        )
        # Committed before anything else can fail: a cancel from now on reaches this provider job, and a
        # worker taking the job over resumes it. The lease makes this worker the column's only writer.
        db.session.execute(update(TrainingJob).where(TrainingJob.id == self.job_id)
                           .values(external_job_id=provider_job.id))
        db.session.commit()
        log.info("job %s: provider job %s created", self.job_id, provider_job.id)
        self.ctx.report(progress=0.01, message=f"Created fine-tuning job {provider_job.id} at "
                                                f"{self.provider_name} for {model}.")
        return provider_job.id

    def upload(self, split: str) -> str | None:
        """The split's datasets as one chat JSONL file at the provider; its file id, None without datasets."""
        datasets = [link.dataset for link in self.job.datasets if link.split == split]
        if not datasets:
            return None
        names = ", ".join(dataset.name for dataset in datasets)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            count = write_chat_jsonl(datasets, spool)
            spool.seek(0)
            end_transaction()
            uploaded = self.client.files.create(
                file=(f"minion-job-{self.job_id}-{split}.jsonl", spool, "application/jsonl"), purpose="fine-tune",
            )
        self.ctx.report(message=f"Uploaded the {split} split ({count:,} examples from {names}) as {uploaded.id}.")
        return uploaded.id

    # --- following ----------------------------------------------------------------------------------

    def follow(self, provider_job) -> TrainingOutcome | None:
        """Map the provider's status to ours; the outcome once it succeeded."""
        status = provider_job.status
        changed, self.provider_status = status != self.provider_status, status
        if status in PROVIDER_PHASES:
            progress, message = PROVIDER_PHASES[status]
            if changed:
                self.ctx.report(progress=None if status == "running" else progress, message=message)
            return None
        if status == "succeeded":
            metrics = dict(self.last_metrics)
            if provider_job.trained_tokens is not None:
                metrics["trained_tokens"] = float(provider_job.trained_tokens)
            self.ctx.report(progress=1.0, message=f"Fine-tuned model {provider_job.fine_tuned_model} is ready.")
            return TrainingOutcome(metrics=metrics, external_model_id=provider_job.fine_tuned_model)
        if status == "failed":
            error = provider_job.error
            reason = error.message if error and error.message else "the provider gave no reason"
            raise JobFailed(self.scrub(f"{self.provider_name} failed the fine-tuning job: {reason}"))
        if status == "cancelled":
            self.ctx.report(level="warning", message=f"The fine-tuning job was cancelled at {self.provider_name}.")
            raise JobCanceled(f"provider job {provider_job.id} was cancelled at the provider")
        raise JobFailed(self.scrub(f"{self.provider_name} reports an unknown status {status!r}."))

    def mirror_events(self, provider_job_id: str) -> None:
        """Copy the provider's new events into the job's log, oldest first, each exactly once."""
        for event in self.new_events(provider_job_id):
            data = event.data if isinstance(event.data, dict) else {}
            # The step becomes progress (and is in the message), so metrics are only what is measured.
            metrics = {name: float(value) for name, value in data.items()
                       if isinstance(value, (int, float)) and not isinstance(value, bool)
                       and name not in ("step", "total_steps")}
            progress = None
            if data.get("total_steps") and isinstance(data.get("step"), (int, float)):
                progress = min(max(data["step"] / data["total_steps"], 0.0), 0.99)
            self.last_metrics.update(metrics)
            # The cursor commits with the event it belongs to (ctx.report commits the session).
            db.session.execute(update(TrainingJob).where(TrainingJob.id == self.job_id)
                               .values(external_events_cursor=event.id))
            self.ctx.report(progress=progress, metrics=metrics or None,
                            level=PROVIDER_LEVELS.get(event.level, "info"),
                            message=self.scrub(f"{self.provider_name}: {event.message}"))

    def new_events(self, provider_job_id: str) -> list:
        """Events newer than the last mirrored one, oldest first; every page is read.

        The provider lists events newest first and ``after`` pages towards older ones, so
        reading stops at the first event already mirrored.
        """
        cursor = db.session.scalar(select(TrainingJob.external_events_cursor).where(TrainingJob.id == self.job_id))
        end_transaction()
        fresh = []
        page = self.client.fine_tuning.jobs.list_events(provider_job_id, limit=EVENT_PAGE_SIZE)
        while True:
            for event in page.data:
                if event.id == cursor:
                    return fresh[::-1]
                fresh.append(event)
            if not page.has_next_page():
                return fresh[::-1]
            page = page.get_next_page()

    # --- stopping -----------------------------------------------------------------------------------

    def wait(self, seconds: float) -> None:
        """Sleep until the next poll, looking for a cancel every second so that it reaches the provider soon."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 1.0))
            self.stop_if_canceled()

    def stop_if_canceled(self) -> None:
        """JobCanceled once the job was canceled (or failed) here; LeaseLost when another worker holds it."""
        if not self.ctx.cancel_requested():
            return
        status = db.session.scalar(select(TrainingJob.status).where(TrainingJob.id == self.job_id))
        db.session.rollback()
        if status in ACTIVE_JOB_STATUSES:
            raise LeaseLost(f"Job #{self.job_id} is no longer held by this worker.")
        raise JobCanceled(f"Job #{self.job_id} is {status}.")

    def cancel_at_provider(self, provider_job_id: str) -> None:
        """Stop the provider's job (and its bill); a failure is logged, as the job ends here anyway."""
        try:
            self.client.fine_tuning.jobs.cancel(provider_job_id)
        except openai.OpenAIError as error:
            log.warning("job %s: cancelling provider job %s failed: %s",
                        self.job_id, provider_job_id, self.scrub(describe(error, self.provider_name)))
        else:
            log.info("job %s: provider job %s cancelled", self.job_id, provider_job_id)


def end_transaction() -> None:
    """Commit before waiting on the provider: on SQLite (WAL) a transaction that read before another
    connection (a heartbeat) wrote can no longer write, so none stays open across a network call."""
    db.session.commit()


def write_chat_jsonl(datasets, out: IO[bytes]) -> int:
    """Write every example of ``datasets`` to ``out`` as chat JSONL lines; how many were written."""
    count = 0
    for example in examples_of(datasets):
        out.write(json.dumps(example.as_chat(), ensure_ascii=False).encode() + b"\n")
        count += 1
    return count


def examples_of(datasets) -> Iterator[Any]:
    max_row_chars = current_app.config["DATASET_MAX_ROW_CHARS"]
    for dataset in datasets:
        try:
            stream = open_artifact(dataset.uri)
        except (OSError, ImportError, ValueError) as error:  # gone, unreachable, or a store this worker cannot read
            raise JobFailed(f"Dataset {dataset.name} cannot be read from the artifact store "
                            f"({type(error).__name__}: {error}).") from None
        with stream:
            try:
                yield from read_examples(stream, dataset.format, max_row_chars)
            except ValueError as error:
                raise JobFailed(f"Dataset {dataset.name} no longer reads as it did when it was checked "
                                f"({error}); upload it again.") from None
