"""Celery tasks of the training domain: thin, by id, idempotent (a job runs once however often it arrives)."""
from __future__ import annotations

from celery import shared_task

from webapp.extensions import db
from webapp.training import services
from webapp.training import workers  # noqa: F401  (its signal handlers keep the worker registry)
from webapp.training.runtime import execute_job


@shared_task(bind=True, acks_late=True, ignore_result=True)
def run_training_job(self, job_id: int) -> str:
    """Claim job ``job_id`` and run it on this worker; a job another worker claimed is left alone."""
    return execute_job(job_id, worker_name=self.request.hostname or "worker")


@shared_task(ignore_result=True)
def sweep_jobs() -> dict:
    """Dispatch again unclaimed queued jobs; queue again or fail jobs whose worker stopped heartbeating."""
    summary = services.sweep()
    db.session.commit()
    return vars(summary)
