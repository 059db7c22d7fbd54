"""The staff workers page's facts: each Celery worker's own row, the broker's queues, the oldest queued job.

Workers keep their rows themselves, through the Celery signal handlers below (connected when
a worker imports the training tasks, which import this module): a row on start, a heartbeat
every WORKER_HEARTBEAT_SECONDS from a thread of the worker's main process, a stop time on a
clean shutdown. A worker not heard from for WORKER_STALE_SECONDS is stale. Its counts grow with
each job that ends while it holds it, in the transaction that ends the job.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import Celery, signals
from flask import Flask
from sqlalchemy import event as sa_event
from sqlalchemy import Row, func, inspect, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from webapp.db import utcnow
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingJobStatusCount, TrainingWorker
from webapp.training.services import FINISHED_STATUSES

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


@sa_event.listens_for(Session, "before_flush")
def count_ended_jobs(session: Session, flush_context, instances) -> None:
    """Count a job that ends (succeeded, failed, canceled) on the worker that held it, in the same transaction.

    Whoever ends it (the worker, the sweeper after a lost worker, a cancel in the console), no
    commit is added: on SQLite every extra commit from another process can refuse a request's write.
    """
    ended: Counter[tuple[str, bool]] = Counter()
    for job in session.dirty:
        if not isinstance(job, TrainingJob) or not job.worker_name:
            continue
        before, after = inspect(job).attrs.status.history.deleted, inspect(job).attrs.status.history.added
        if after and after[0] in FINISHED_STATUSES and before and before[0] not in FINISHED_STATUSES:
            ended[job.worker_name, after[0] == "failed"] += 1
    for (name, failed), count in ended.items():
        session.connection().execute(update(TrainingWorker).where(TrainingWorker.name == name).values(
            processed=TrainingWorker.processed + count, failed=TrainingWorker.failed + (count if failed else 0)))


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


def board_state() -> list[Row]:
    """What the workers page shows from the database, in one query of indexed reads.

    One row per worker (its row's updated_at moves with every start, heartbeat, stop and count),
    each carrying the same stamps of the jobs: how many run and are queued (the counts the
    triggers keep), the latest heartbeat of a running job (a worker's progress report is one),
    the latest dispatch and the oldest queued job; one row of stamps when no worker exists.
    Not read: the broker's queue depths, which move with the dispatches (and while a worker is
    online its heartbeats change the state every WORKER_HEARTBEAT_SECONDS anyway), and the
    names of running jobs' owners.
    """
    def count(status: str) -> Any:
        return select(TrainingJobStatusCount.count).where(TrainingJobStatusCount.status == status).scalar_subquery()

    # By created_at alone, so the (status, created_at) index answers at once (the page breaks ties by id).
    oldest = select(TrainingJob.id).where(TrainingJob.status == "queued").order_by(TrainingJob.created_at).limit(1)
    stamps = select(
        count("running").label("running"), count("queued").label("queued"),
        select(func.max(TrainingJob.heartbeat_at)).where(TrainingJob.status == "running")
        .scalar_subquery().label("running_heard"),
        select(func.max(TrainingJob.dispatched_at)).where(TrainingJob.status == "queued")
        .scalar_subquery().label("dispatched"),
        oldest.scalar_subquery().label("oldest_queued"),
        oldest.with_only_columns(TrainingJob.queued_at).scalar_subquery().label("oldest_queued_at"),
    ).subquery()
    workers = select(
        TrainingWorker.id, TrainingWorker.updated_at, TrainingWorker.started_at, TrainingWorker.heartbeat_at,
        TrainingWorker.stopped_at,
    ).order_by(TrainingWorker.heartbeat_at.desc(), TrainingWorker.id.desc()).limit(MAX_WORKERS_SHOWN).subquery()
    return list(db.session.execute(select(stamps, workers).select_from(stamps.outerjoin(workers, true()))))


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
