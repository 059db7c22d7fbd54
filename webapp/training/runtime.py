"""What a worker does with one claimed job: the trainer interface and the run around it.

A trainer is a function ``(job_id: int, ctx: JobContext) -> TrainingOutcome``, chosen by the
job's ``job_type`` (see TRAINERS). It reports through ``ctx`` (the same job service the runner
API uses), checks ``ctx.cancel_requested()`` between steps and raises JobCanceled once it
stopped, or JobFailed with a message fit for the user. Each trainer module declares the
hyperparameters of the /jobs/new form in a module-level ``HYPERPARAMETERS`` list.
"""
from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from webapp.extensions import db

log = logging.getLogger(__name__)

# job_type -> "module:function" of its trainer, imported when a job of that type runs.
TRAINERS = {
    "internal": "webapp.training.internal:run_internal_job",
    "external": "webapp.training.external:run_external_job",
}


@dataclass
class TrainingOutcome:
    metrics: dict[str, float]                 # final metrics shown on the job and the version
    artifact_uri: str | None = None           # internal trainer: the fitted model in the artifact store
    external_model_id: str | None = None      # external: the fine-tuned model id at the provider


class JobCanceled(Exception):
    """A trainer raises it once it stopped because the job was canceled."""


class JobFailed(Exception):
    """A trainer raises it with a message fit to show to the user."""


class LeaseLost(JobCanceled):
    """The job is no longer this worker's (the sweeper gave it away or failed it): stop, write nothing."""


@dataclass(frozen=True)
class HyperParameter:
    """One field of the /jobs/new form, declared by a trainer."""

    name: str
    label: str
    type: type  # int or float
    min: float
    max: float
    default: float
    help: str = ""


@dataclass
class JobContext:
    """Built by the worker task for one claimed job, passed to the trainer."""

    job_id: int
    worker_name: str
    attempt: int
    _lost: threading.Event = field(default_factory=threading.Event, repr=False)

    def report(self, *, progress: float | None = None, message: str | None = None,
               level: str = "info", metrics: dict[str, float] | None = None) -> None:
        """Record progress, a log line and metrics through the job service, and commit; also heartbeats.

        Raises JobCanceled when the job was canceled, LeaseLost when it is no longer this worker's.
        """
        from webapp.training import services

        db.session.commit()  # end what the trainer read or wrote, so the job's lock comes first below
        for attempt in range(services.WRITE_ATTEMPTS):
            try:
                services.lock_job(self.job_id)
                job = self._held_job()
                if job.status != "running":
                    raise JobCanceled(f"Job #{job.id} is {job.status}.")
                services.record_progress(job, progress=progress, message=message, level=level,
                                         metrics=metrics or {})
                job.heartbeat_at = services.utcnow()
                db.session.commit()
                return
            except (StaleDataError, OperationalError):
                # The console (a cancel) or the sweeper wrote the job meanwhile, or on SQLite the
                # heartbeat thread committed after this read began: look again.
                db.session.rollback()
                if attempt == services.WRITE_ATTEMPTS - 1:
                    raise

    def heartbeat(self) -> None:
        """Tell the console this worker still holds the job (no lock_version bump, so no edit is refused)."""
        from webapp.training import services

        held = services.heartbeat(self.job_id, self.worker_name, self.attempt)
        db.session.commit()
        if not held:
            self._lost.set()

    def cancel_requested(self) -> bool:
        """True once the job was canceled in the console, or is no longer this worker's (one indexed read)."""
        from webapp.training import services

        if self._lost.is_set():
            return True
        held = services.lease_state(self.job_id, self.worker_name, self.attempt)
        db.session.rollback()  # end the read's transaction: the next read must see a later cancel
        if held is None:
            self._lost.set()
            return True
        return held != "running"

    def _held_job(self):
        from webapp.training.models import TrainingJob

        job = db.session.get(TrainingJob, self.job_id, populate_existing=True)
        if job is None or job.worker_name != self.worker_name or job.attempts != self.attempt:
            db.session.rollback()
            self._lost.set()
            raise LeaseLost(f"Job #{self.job_id} is no longer held by {self.worker_name}.")
        return job


def trainer_for(job_type: str):
    """The trainer function of ``job_type``; JobFailed when it is not installed in this build."""
    module_name, _, function = TRAINERS[job_type].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise JobFailed(f"{job_type.capitalize()} training is not available on this worker.") from None
    return getattr(module, function)


def hyperparameters_for(job_type: str) -> list[HyperParameter]:
    """The trainer's declared hyperparameters; none when that trainer is not installed."""
    module_name = TRAINERS[job_type].partition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        return []
    return list(module.HYPERPARAMETERS)


class Heartbeat:
    """Heartbeats the job from a thread while the trainer runs, whatever the length of its steps."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        self.ctx, self.interval = ctx, interval
        self.app = current_app._get_current_object()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"heartbeat-job-{ctx.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(self.interval + 5)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.app.app_context():
                try:
                    self.ctx.heartbeat()
                except Exception:  # a database hiccup: the next beat tries again, the lease allows for it
                    log.exception("heartbeat of job %s failed", self.ctx.job_id)
                finally:
                    db.session.remove()


def execute_job(job_id: int, worker_name: str) -> str:
    """Claim job ``job_id`` and run its trainer to the end; what happened, for the worker's log.

    Safe to call twice for one job (a broker may deliver twice): only one call claims it.
    """
    from webapp.training import services

    attempt = services.claim_job(job_id, worker_name)
    db.session.commit()
    if attempt is None:
        return "not claimed: the job is not queued (run elsewhere, finished, or canceled)"
    ctx = JobContext(job_id=job_id, worker_name=worker_name, attempt=attempt)
    job_type = services.job_type_of(job_id)
    try:
        with Heartbeat(ctx, current_app.config["JOB_HEARTBEAT_SECONDS"]):
            outcome = trainer_for(job_type)(job_id, ctx)
    except LeaseLost:
        db.session.rollback()
        return "lease lost: the job was given to another worker or failed by the sweeper"
    except JobCanceled:
        db.session.rollback()
        services.finish_held_job(ctx, "canceled")
        return "canceled"
    except JobFailed as error:
        db.session.rollback()
        services.finish_held_job(ctx, "failed", error=str(error))
        return f"failed: {error}"
    except Exception as error:
        db.session.rollback()
        log.exception("trainer of job %s crashed", job_id)
        services.finish_held_job(ctx, "failed", error=f"The trainer stopped on an internal error ({type(error).__name__}).")
        return "failed: internal error"
    return services.finish_held_job(ctx, "succeeded", outcome=outcome)
