"""The staff workers page's facts: each Celery worker's own row, the broker's queues, the oldest queued job.

Workers keep their rows themselves, through the Celery signal handlers below (connected when
a worker imports the training tasks, which import this module): a row on start, a heartbeat
every WORKER_HEARTBEAT_SECONDS from a thread of the worker's main process, a count after every
training job it ran, a stop time on a clean shutdown. A worker not heard from for WORKER_STALE_SECONDS is stale.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import Celery, signals
from flask import Flask
from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from webapp.db import utcnow
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingWorker
from webapp.training.services import FINISHED_STATUSES, RUN_TASK

log = logging.getLogger(__name__)

# How long the page waits for the broker before it says the queue depths are unknown.
BROKER_TIMEOUT_SECONDS = 3.0
# The page lists this many workers, most recently heard from first.
MAX_WORKERS_SHOWN = 200


# --- what workers write -------------------------------------------------------------------------


def worker_started(name: str, host: str, pid: int | None, queues: list[str]) -> None:
    """Record that worker ``name`` (re)started: a fresh row, or its old one with the counts kept."""
    now = utcnow()
    values = {"host": host, "pid": pid, "queues": queues, "started_at": now, "heartbeat_at": now, "stopped_at": None}
    if db.session.execute(update(TrainingWorker).where(TrainingWorker.name == name).values(**values)).rowcount:
        return
    try:
        with db.session.begin_nested():
            db.session.add(TrainingWorker(name=name, **values))
    except IntegrityError:  # the same name started twice at once: the other one's row stands
        log.warning("worker %s registered twice at the same moment", name)


def worker_heartbeat(name: str) -> None:
    db.session.execute(update(TrainingWorker).where(TrainingWorker.name == name)
                       .values(heartbeat_at=utcnow(), stopped_at=None))


def worker_stopped(name: str) -> None:
    db.session.execute(update(TrainingWorker).where(TrainingWorker.name == name).values(stopped_at=utcnow()))


def job_task_finished(name: str, job_id: int) -> None:
    """Count job ``job_id`` as processed by worker ``name`` (and failed, if it failed) once it has ended there.

    One UPDATE that reads the job inside it: no read-then-write transaction, which SQLite would
    refuse when another process wrote in between. A delivery the worker did not claim counts nothing.
    """
    jobs = TrainingJob.__table__
    ended_here = select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.worker_name == name,
                                             jobs.c.status.in_(FINISHED_STATUSES)).scalar_subquery()
    db.session.execute(
        update(TrainingWorker).where(TrainingWorker.name == name, ended_here.is_not(None))
        .values(processed=TrainingWorker.processed + 1,
                failed=TrainingWorker.failed + case((ended_here == "failed", 1), else_=0))
    )


# --- what the page reads ------------------------------------------------------------------------


@dataclass
class WorkerRow:
    worker: TrainingWorker
    state: str  # "online", "stale" (not heard from within the lease) or "stopped" (shut down cleanly)
    since: datetime  # started (online), last heard from (stale), stopped (stopped)
    running_jobs: list[TrainingJob] = field(default_factory=list)


@dataclass
class QueueDepth:
    name: str
    messages: int | None
    consumers: int | None


@dataclass
class WorkerBoard:
    workers: list[WorkerRow]
    queues: list[QueueDepth]
    broker_error: str | None
    oldest_queued: TrainingJob | None
    stale_after: timedelta
    now: datetime

    @property
    def oldest_queued_wait(self) -> timedelta | None:
        return self.now - self.oldest_queued.queued_at if self.oldest_queued else None

    @property
    def online_count(self) -> int:
        return sum(row.state == "online" for row in self.workers)


def worker_state(worker: TrainingWorker, now: datetime, stale_after: timedelta) -> tuple[str, datetime]:
    if worker.stopped_at is not None:
        return "stopped", worker.stopped_at
    if now - worker.heartbeat_at > stale_after:
        return "stale", worker.heartbeat_at
    return "online", worker.started_at


def worker_rows(now: datetime, stale_after: timedelta) -> list[WorkerRow]:
    """Workers most recently heard from first, each with its running jobs: two queries."""
    workers = db.session.scalars(
        select(TrainingWorker).order_by(TrainingWorker.heartbeat_at.desc(), TrainingWorker.id.desc())
        .limit(MAX_WORKERS_SHOWN)
    ).all()
    rows = {worker.name: WorkerRow(worker, *worker_state(worker, now, stale_after)) for worker in workers}
    if rows:
        running = db.session.scalars(
            select(TrainingJob).options(joinedload(TrainingJob.user))
            .where(TrainingJob.status == "running", TrainingJob.worker_name.in_(list(rows)))
            .order_by(TrainingJob.id)
        )
        for job in running:
            rows[job.worker_name].running_jobs.append(job)
    order = {"online": 0, "stale": 1, "stopped": 2}
    return sorted(rows.values(), key=lambda row: order[row.state])


def oldest_queued_job() -> TrainingJob | None:
    return db.session.scalars(
        select(TrainingJob).options(joinedload(TrainingJob.user))
        .where(TrainingJob.status == "queued").order_by(TrainingJob.created_at, TrainingJob.id).limit(1)
    ).first()


def queue_depths(celery: Celery) -> tuple[list[QueueDepth], str | None]:
    """Messages waiting and consumers per queue the app routes to, asked of the broker; or why not.

    A passive declare reads a queue without creating it; a queue nobody declared yet holds nothing.
    """
    names = sorted(celery.amqp.queues) or [celery.conf.task_default_queue]
    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
            return [queue_depth(connection, name) for name in names], None
    except Exception as error:  # any broker failure: the page still shows the workers and jobs
        log.warning("queue depths unavailable: %s", error)
        return [QueueDepth(name, None, None) for name in names], f"The broker did not answer ({type(error).__name__})."


def queue_depth(connection, name: str) -> QueueDepth:
    # A channel per queue: AMQP closes the channel that asked about a missing queue.
    channel = connection.channel()
    try:
        declared = channel.queue_declare(queue=name, passive=True)
        # Only AMQP brokers count consumers; the others (Redis, the filesystem) always answer 0.
        consumers = declared.consumer_count if connection.transport.driver_type == "amqp" else None
        return QueueDepth(name, declared.message_count, consumers)
    except connection.channel_errors:
        return QueueDepth(name, 0, 0)
    finally:
        with contextlib.suppress(*connection.connection_errors, *connection.channel_errors):
            channel.close()


def worker_board(celery: Celery, stale_after: timedelta) -> WorkerBoard:
    now = utcnow()
    queues, broker_error = queue_depths(celery)
    return WorkerBoard(
        workers=worker_rows(now, stale_after), queues=queues, broker_error=broker_error,
        oldest_queued=oldest_queued_job(), stale_after=stale_after, now=now,
    )


def waiting_for_worker_since(job: TrainingJob, dispatch_timeout: timedelta) -> datetime | None:
    """When a queued job began waiting, once it waited longer than the sweeper allows; else None."""
    if job.status != "queued":
        return None
    since = job.dispatched_at or job.queued_at
    return since if utcnow() - since > dispatch_timeout else None


# --- the wiring into Celery ---------------------------------------------------------------------


class Heartbeats:
    """The worker main process's heartbeat thread."""

    def __init__(self, app: Flask, name: str, interval: float) -> None:
        self.app, self.name, self.interval = app, name, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"registry-heartbeat-{name}", daemon=True)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            in_transaction(self.app, worker_heartbeat, self.name)


def in_transaction(app: Flask, write, *args) -> None:
    """Run one registry write and commit it; a failure is logged, never raised into Celery."""
    with app.app_context():
        try:
            write(*args)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("worker registry: %s failed", write.__name__)
        finally:
            db.session.remove()


_heartbeats: dict[str, Heartbeats] = {}


@signals.worker_ready.connect
def on_worker_ready(sender, **kwargs) -> None:
    app = getattr(sender.app, "flask_app", None)
    if app is None:
        return
    name = sender.hostname
    queues = sorted(sender.app.amqp.queues.consume_from or sender.app.amqp.queues)
    in_transaction(app, worker_started, name, socket.gethostname(), os.getpid(), queues)
    beats = _heartbeats[name] = Heartbeats(app, name, app.config["WORKER_HEARTBEAT_SECONDS"])
    beats.thread.start()


@signals.worker_shutdown.connect
def on_worker_shutdown(sender, **kwargs) -> None:
    app = getattr(sender.app, "flask_app", None)
    if app is None:
        return
    beats = _heartbeats.pop(sender.hostname, None)
    if beats is not None:
        beats.stopped.set()
    in_transaction(app, worker_stopped, sender.hostname)


@signals.task_postrun.connect
def on_task_postrun(sender=None, args=None, **kwargs) -> None:
    """After a training job's task (not every task: beat's sweeps would write every few seconds)."""
    if sender is None or sender.name != RUN_TASK or not args:
        return
    app = getattr(sender.app, "flask_app", None)
    hostname = getattr(sender.request, "hostname", None)
    if app is not None and hostname is not None:
        in_transaction(app, job_task_finished, hostname, args[0])
