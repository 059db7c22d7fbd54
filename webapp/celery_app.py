"""Celery, wired the Flask way: ``celery_init_app`` builds it from the app's config, and every
task runs inside ``app.app_context()`` (the FlaskTask base), so tasks use ``db`` as views do.

Tasks live in each domain's ``tasks.py``, take ids rather than objects, and are idempotent:
a broker may deliver a message twice, and tasks are acknowledged late (after they ran).
"""
from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery, Task
from flask import Flask

TASK_MODULES = ["webapp.training.tasks", "webapp.billing.tasks"]


EMBEDDED_BROKER = "filesystem://"


def broker_url(raw: str | None) -> str:
    """CELERY_BROKER_URL, else the serverless embedded broker: kombu's filesystem transport.

    Chosen over kombu's SQLAlchemy transport on SQLite (Celery 5.7, kombu 5.7): two processes
    creating its queue table row at once crash one of them (kombu catches only OperationalError,
    SQLAlchemy 2 raises IntegrityError), which is exactly what a first start of web server, worker
    and beat does; and each publish costs a SQLite commit (~60 ms against ~3 ms). The filesystem
    transport claims a message by an atomic rename and carries Celery's broadcast (control) messages.
    Neither keeps an unacknowledged message when a worker is killed: the job sweeper covers that.
    """
    return raw or EMBEDDED_BROKER


def transport_options(url: str, instance_path: str) -> dict:
    """The filesystem transport's folders, in the instance folder; other brokers need none."""
    if not url.startswith("filesystem://"):
        return {}
    root = os.path.join(instance_path, "celery-broker")
    folders = {"data_folder_in": os.path.join(root, "queue"), "data_folder_out": os.path.join(root, "queue"),
               "control_folder": os.path.join(root, "control")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    return folders


def celery_config(app: Flask) -> dict:
    config = app.config
    return {
        "broker_url": config["CELERY_BROKER_URL"],
        # Publishing gives up after one quick retry when the broker is down (instead of holding the request
        # for seconds): the job stays queued and the sweeper dispatches it again.
        "broker_transport_options": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                     **transport_options(config["CELERY_BROKER_URL"], app.instance_path)},
        "broker_connection_retry_on_startup": True,
        # A message is acknowledged after its task ran, and a worker takes one message at a time.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": config["CELERY_QUEUE"],
        "include": TASK_MODULES,
        "beat_schedule_filename": os.path.join(app.instance_path, "celerybeat-schedule"),
        "beat_schedule": {
            "sweep-training-jobs": {
                "task": "webapp.training.tasks.sweep_jobs",
                "schedule": timedelta(seconds=config["JOB_SWEEP_SECONDS"]),
            },
            "roll-subscription-periods": {
                "task": "webapp.billing.tasks.roll_subscription_periods",
                "schedule": timedelta(seconds=config["BILLING_ROLL_SECONDS"]),
            },
            "send-usage-alerts": {
                "task": "webapp.billing.tasks.send_usage_alerts",
                "schedule": timedelta(seconds=config["USAGE_ALERT_SECONDS"]),
            },
        },
    }


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(celery_config(app))
    app.extensions["celery"] = celery
    # Worker signal handlers (the worker registry of webapp.training.workers) run outside any task.
    celery.flask_app = app
    return celery
