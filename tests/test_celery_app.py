"""Celery wired the Flask way: configuration from the app, tasks in app context, beat's schedule."""
from __future__ import annotations

from datetime import timedelta

from tests.factories import make_user
from tests.training.engine_helpers import queue_internal_job
from webapp.billing.services import RollOverSummary
from webapp.celery_app import broker_url, transport_options


def test_the_embedded_broker_is_the_filesystem_transport_in_the_instance_folder(tmp_path):
    assert broker_url(None) == "filesystem://"
    assert broker_url("redis://cache:6379/0") == "redis://cache:6379/0"
    folders = transport_options("filesystem://", str(tmp_path))
    assert folders["data_folder_in"] == folders["data_folder_out"] == str(tmp_path / "celery-broker" / "queue")
    assert (tmp_path / "celery-broker" / "control").is_dir()
    assert transport_options("amqp://guest@rabbit//", str(tmp_path)) == {}


def test_tasks_are_acked_late_and_beat_sweeps_jobs_and_rolls_periods(app):
    celery = app.extensions["celery"]
    assert celery.conf.task_acks_late and celery.conf.worker_prefetch_multiplier == 1
    assert celery.conf.task_default_queue == app.config["CELERY_QUEUE"]
    schedule = {entry["task"]: entry["schedule"] for entry in celery.conf.beat_schedule.values()}
    assert schedule == {
        "webapp.training.tasks.sweep_jobs": timedelta(seconds=app.config["JOB_SWEEP_SECONDS"]),
        "webapp.billing.tasks.roll_subscription_periods": timedelta(seconds=app.config["BILLING_ROLL_SECONDS"]),
        "webapp.billing.tasks.send_usage_alerts": timedelta(seconds=app.config["USAGE_ALERT_SECONDS"]),
    }


def test_the_periodic_tasks_run_their_services_in_the_app_context(app, db_session):
    celery = app.extensions["celery"]
    celery.loader.import_default_modules()
    assert celery.tasks["webapp.billing.tasks.roll_subscription_periods"]() == vars(RollOverSummary())
    assert celery.tasks["webapp.billing.tasks.send_usage_alerts"]() == 0
    job = queue_internal_job(make_user(), epochs=1)
    job.dispatched_at -= timedelta(hours=1)
    db_session.commit()
    assert celery.tasks["webapp.training.tasks.sweep_jobs"]() == \
        {"dispatched_again": 1, "queued_again": 0, "failed_lost": 0}
