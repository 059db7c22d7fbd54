"""``flask seed scale``: bulk rows for benchmarks.

Builds on the demo's reference data (plans, the "user" role, models): without
it ``SeedError`` says to run ``flask seed demo`` first. Refuses to run twice:
any ``@scale.test`` user means a load already happened.

Rows come from plain Python with a fixed random seed, each table in one
stream: binary COPY on PostgreSQL, batched executemany of a Core insert on
SQLite. Ids are assigned here, from each table's max(id) + 1, so foreign keys
need no round trips; PostgreSQL's sequences are moved past them at the end.
Foreign keys are checked once, after the whole load (see
``_CopyLoader.checks_deferred``). Like any seed, it expects nobody else to be
writing to the same tables meanwhile.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select

from webapp.accounts.models import Role, User
from webapp.accounts.passwords import hash_password
from webapp.billing.models import USAGE_METRICS, Plan
from webapp.database import unbounded
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.services import slice_start
from webapp.minions.services import gains_from_events
from webapp.minions.xp import level_for_xp
from webapp.providers.models import AIModel
from webapp.seed import SeedError
from webapp.seed.demo import MINION_COLORS, MINION_TEMPERAMENTS

RANDOM_SEED = 20_261_125
EMAIL_DOMAIN = "scale.test"
DAY = 86_400.0

# Weighted pools, sampled with rng.choice (much cheaper per row than rng.choices).
PLAN_MIX = {"free": 60, "pro": 30, "team": 9, "enterprise": 1}
SUBSCRIPTION_STATUS_MIX = {"active": 85, "trialing": 8, "past_due": 7}
PAYMENT_FOR_STATUS = {"active": "succeeded", "trialing": "pending", "past_due": "failed"}
JOB_STATUS_MIX = {"succeeded": 55, "failed": 15, "canceled": 10, "running": 10, "queued": 10}
XP_REASONS = {"daily_challenge": (10, 50), "quest.completed": (75, 200), "streak.bonus": (30, 60)}

FIRST_NAMES = (
    "Aisha Ana Andrei Arjun Beatriz Chen Chloe Daniel Diego Elena Emeka Fatima Hana Hiroshi Ines "
    "Ivan Jamal Jia Johan Kofi Laila Lars Leila Lucas Maria Mateo Mei Mohammed Nadia Noah Olga "
    "Omar Priya Rafael Rosa Sakura Samuel Sofia Tariq Thandiwe Tomasz Valentina Wei Yusuf Zara"
).split()
LAST_NAMES = (
    "Abe Adeyemi Alvarez Andersen Bauer Novak Chowdhury Costa Dubois Eriksson Fernandes Garcia "
    "Gupta Haddad Hansen Ivanova Jensen Kang Kowalski Kumar Larsen Lee Mensah Moreau Nakamura "
    "Nguyen Okafor Oliveira Park Petrov Rossi Sato Schmidt Silva Singh Smith Tanaka Torres Weber "
    "Wong Yilmaz Zhang"
).split()
MINION_ADJECTIVES = "Brave Clever Dusty Eager Fuzzy Gentle Jolly Lucky Mighty Nimble Quiet Rusty Swift Witty".split()
MINION_NOUNS = "Badger Beacon Comet Falcon Gizmo Otter Pixel Quokka Rocket Sprocket Widget Yeti".split()
JOB_TASKS = ("support replies", "invoice parsing", "code review", "summaries", "translation", "sql helper")
JOB_ERRORS = (
    "CUDA out of memory; retry with a smaller batch size.",
    "The provider rejected the training file: invalid JSON on line 88.",
    "Runner lost contact for more than 10 minutes.",
    "Validation loss diverged (NaN at step 400).",
)
SUBSCRIPTION_PERIOD = timedelta(days=30)

COLUMNS = {
    "users": ("id", "email", "display_name", "password_hash", "is_active", "email_verified_at",
              "last_login_at", "current_subscription_id", "created_at", "updated_at"),
    "user_roles": ("id", "user_id", "role_id"),
    "user_subscriptions": ("id", "user_id", "plan_id", "status", "current_period_start", "current_period_end",
                           "provider_ref", "created_at", "updated_at"),
    "payments": ("id", "user_id", "subscription_id", "amount_cents", "status", "description", "provider_ref",
                 "idempotency_key", "paid_at", "failure_reason", "created_at", "updated_at"),
    "usage_records": ("id", "user_id", "subscription_id", "model_id", "metric", "quantity", "occurred_at",
                      "created_at", "event_id"),
    "usage_rollups": ("id", "user_id", "day", "starts_at", "metric", "quantity", "created_at", "updated_at"),
    "minions": ("id", "owner_user_id", "model_id", "name", "xp", "level", "status", "attributes",
                "created_at", "updated_at"),
    "training_jobs": ("id", "user_id", "minion_id", "base_model_id", "job_type", "provider_id", "external_job_id",
                      "name", "status", "progress", "hyperparameters", "metrics", "error_message", "queued_at",
                      "started_at", "finished_at", "created_at", "updated_at"),
    "minion_xp_events": ("id", "minion_id", "delta", "reason", "training_job_id", "created_at", "updated_at"),
    "training_job_events": ("id", "training_job_id", "level", "message", "progress", "metrics", "created_at",
                            "updated_at"),
    "minion_xp_gains": ("id", "minion_id", "period", "period_start", "gained", "created_at", "updated_at"),
}


def is_subscribed(user_index: int) -> bool:
    """Three users in five have a live subscription."""
    return user_index % 5 < 3


def subscriptions_before(user_index: int) -> int:
    """How many users before this one have a subscription."""
    return 3 * (user_index // 5) + min(user_index % 5, 3)


def xp_event_count(minion_index: int) -> int:
    return 1 + minion_index % 3


def planned_rows(users: int, usage: int, minions: int, jobs: int, events: int) -> dict[str, int]:
    """The rows ``seed_scale`` will insert per table, known before it starts.

    Leaves out minion_xp_gains and usage_rollups, the rollups of the XP events and of
    the usage records, whose row counts depend on the drawn dates.
    """
    subscriptions = subscriptions_before(users)
    return {
        "users": users,
        "user_roles": users,
        "user_subscriptions": subscriptions,
        "payments": subscriptions,
        "usage_records": usage,
        "minions": minions,
        "training_jobs": jobs,
        "minion_xp_events": sum(xp_event_count(k) for k in range(minions)),
        "training_job_events": events,
    }


def seed_scale(
    users: int = 100_000,
    usage: int = 1_000_000,
    minions: int = 100_000,
    jobs: int = 50_000,
    events: int = 200_000,
    batch: int = 10_000,
    password: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Insert the bulk data set in one transaction; return rows per table and the time taken.

    ``batch`` is the executemany size on SQLite and how often ``progress`` hears
    of new rows. Every scale user gets the same argon2 hash of ``password``
    (hashed once); by default a random password nobody knows.
    """
    started = time.perf_counter()
    connection = db.session.connection()
    try:
        with unbounded(connection):
            data = _ScaleData(connection, users, usage, minions, jobs, events, password)
            loader_class = _CopyLoader if connection.dialect.name == "postgresql" else _SQLiteLoader
            loader = loader_class(connection, batch, progress or (lambda _rows: None))
            # Foreign keys are checked once the whole load is in, so users can point at
            # subscriptions written after them.
            with loader.checks_deferred(COLUMNS):
                rows = {
                    "users": loader.load("users", data.users()),
                    "user_roles": loader.load("user_roles", data.user_roles()),
                    "user_subscriptions": loader.load("user_subscriptions", data.subscriptions()),
                    "payments": loader.load("payments", data.payments()),
                    "usage_records": loader.load("usage_records", data.usage_records()),
                    "usage_rollups": loader.load("usage_rollups", data.usage_rollups()),
                }
                data.plan_minions_and_jobs()
                rows["minions"] = loader.load("minions", data.minions())
                rows["training_jobs"] = loader.load("training_jobs", data.training_jobs())
                rows["minion_xp_events"] = loader.load("minion_xp_events", data.xp_events())
                rows["training_job_events"] = loader.load("training_job_events", data.job_events())
                rows["minion_xp_gains"] = loader.load("minion_xp_gains", data.xp_gains())
            loader.finish(rows)
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    seconds = time.perf_counter() - started
    total = sum(rows.values())
    return {"rows": rows, "total_rows": total, "seconds": seconds, "rows_per_second": total / seconds}


def _pool(weights: dict[Any, int]) -> list[Any]:
    """A list in which each key appears as often as its weight, for rng.choice."""
    return [key for key, weight in weights.items() for _ in range(weight)]


class _ScaleData:
    """Generates every table's rows as tuples in COLUMNS order, ids assigned up front."""

    def __init__(self, connection, users, usage, minions, jobs, events, password) -> None:
        self.connection = connection
        self.n_users, self.n_usage, self.n_minions, self.n_jobs, self.n_events = users, usage, minions, jobs, events
        if users < 1 and (usage or minions or jobs):
            raise SeedError("Usage, minions and jobs belong to scale users: --users must be at least 1.")
        if events and not jobs:
            raise SeedError("Job events belong to jobs: --jobs must be at least 1 when --events is.")
        self.load_reference_data()
        taken = connection.scalar(
            select(User.id).where(func.lower(User.email).like(f"%@{EMAIL_DOMAIN}")).limit(1)
        )
        if taken is not None:
            raise SeedError(f"Scale data is already loaded (users @{EMAIL_DOMAIN} exist); it is never loaded twice.")
        self.first_ids = {
            table: (connection.scalar(select(func.max(db.metadata.tables[table].c.id))) or 0) + 1
            for table in COLUMNS
        }
        self.password_hash = hash_password(password or secrets.token_urlsafe(24))
        self.rng = random.Random(RANDOM_SEED)
        self.now = utcnow()
        self.subscription_of: list[tuple[int, datetime] | None] = []
        self.subscription_plans: list[tuple[Any, str]] = []
        self.usage_slices: dict[tuple[int, datetime, str], int] = defaultdict(int)

    def load_reference_data(self) -> None:
        connection = self.connection
        plans = {row.code: row for row in connection.execute(select(Plan.id, Plan.code, Plan.name, Plan.price_cents))}
        self.role_id = connection.scalar(select(Role.id).where(Role.name == "user"))
        models = connection.execute(
            select(AIModel.id, AIModel.provider_id, AIModel.model_type)
            .where(AIModel.model_type != "custom", AIModel.is_active)
            .order_by(AIModel.id)
        ).all()
        if not plans or self.role_id is None or not models:
            raise SeedError("The scale load builds on the demo's plans, roles and models: run `flask seed demo` first.")
        self.plan_pool = [plans[code] for code in _pool(PLAN_MIX) if code in plans] or list(plans.values())
        self.model_ids = [m.id for m in models]
        self.hosted_models = [(m.id, m.provider_id) for m in models if m.provider_id and m.model_type == "external"]

    def ids(self, table: str, count: int) -> range:
        return range(self.first_ids[table], self.first_ids[table] + count)

    def user_id(self, index: int) -> int:
        return self.first_ids["users"] + index

    def moment(self, days_back: float, days_span: float) -> datetime:
        """A random moment between days_back and days_back - days_span days ago."""
        return self.now - timedelta(seconds=(days_back - self.rng.random() * days_span) * DAY)

    # --- accounts and billing ------------------------------------------------

    def users(self) -> Iterator[tuple]:
        rng, width = self.rng, max(6, len(str(self.n_users)))
        first_subscription = self.first_ids["user_subscriptions"]
        for index, user_id in enumerate(self.ids("users", self.n_users)):
            joined = self.moment(120, 119)
            verified = joined + timedelta(minutes=10) if rng.random() < 0.95 else None
            last_login = joined + (self.now - joined) * rng.random() if verified and rng.random() < 0.8 else None
            subscription_id = first_subscription + subscriptions_before(index) if is_subscribed(index) else None
            yield (
                user_id, f"scale-user-{index + 1:0{width}d}@{EMAIL_DOMAIN}",
                f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", self.password_hash,
                rng.random() < 0.98, verified, last_login, subscription_id, joined, last_login or joined,
            )

    def user_roles(self) -> Iterator[tuple]:
        for index, row_id in enumerate(self.ids("user_roles", self.n_users)):
            yield row_id, self.user_id(index), self.role_id

    def subscriptions(self) -> Iterator[tuple]:
        rng, statuses = self.rng, _pool(SUBSCRIPTION_STATUS_MIX)
        next_id = self.first_ids["user_subscriptions"]
        for index in range(self.n_users):
            if not is_subscribed(index):
                self.subscription_of.append(None)
                continue
            plan, status = rng.choice(self.plan_pool), rng.choice(statuses)
            start = self.moment(29, 29)
            self.subscription_of.append((next_id, start))
            self.subscription_plans.append((plan, status))
            yield (next_id, self.user_id(index), plan.id, status, start, start + SUBSCRIPTION_PERIOD,
                   f"scale-sub-{next_id}", start, start)
            next_id += 1

    def payments(self) -> Iterator[tuple]:
        live = (entry for entry in enumerate(self.subscription_of) if entry[1] is not None)
        rows = zip(self.ids("payments", len(self.subscription_plans)), live, self.subscription_plans)
        for payment_id, (index, (subscription_id, start)), (plan, status) in rows:
            outcome = PAYMENT_FOR_STATUS[status]
            at = start + timedelta(minutes=2)
            yield (
                payment_id, self.user_id(index), subscription_id, plan.price_cents, outcome,
                f"{plan.name} plan, monthly", f"scale-pay-{payment_id}", f"scale-pay-{payment_id}-key",
                at if outcome == "succeeded" else None,
                "Card declined: insufficient funds." if outcome == "failed" else None,
                at, at,
            )

    def usage_records(self) -> Iterator[tuple]:
        rng, random_ = self.rng, self.rng.random
        now, n_users, first_user = self.now, self.n_users, self.first_ids["users"]
        subscription_of, model_ids = self.subscription_of, self.model_ids
        ceilings = {"input_tokens": 20_000, "output_tokens": 8_000, "requests": 50, "training_minutes": 120}
        metrics = [(metric, ceilings[metric]) for metric in USAGE_METRICS]
        slices = self.usage_slices
        for row_id in self.ids("usage_records", self.n_usage):
            index = int(random_() * n_users)
            metric, ceiling = metrics[int(random_() * len(metrics))]
            occurred = now - timedelta(seconds=random_() * 60 * DAY)
            subscription = subscription_of[index]
            subscription_id = subscription[0] if subscription and occurred >= subscription[1] else None
            quantity = 1 + int(random_() * ceiling)
            # Cut where the subscription's period starts and ends, as the metering path does.
            boundaries = (subscription[1], subscription[1] + SUBSCRIPTION_PERIOD) if subscription else ()
            slices[(first_user + index, slice_start(occurred, boundaries), metric)] += quantity
            yield (row_id, first_user + index, subscription_id, rng.choice(model_ids), metric,
                   quantity, occurred, occurred, f"scale-{row_id}")

    def usage_rollups(self) -> Iterator[tuple]:
        """The daily rollup of the usage records just generated, as the metering path keeps it."""
        for row_id, ((user_id, starts_at, metric), quantity) in zip(
                self.ids("usage_rollups", len(self.usage_slices)), sorted(self.usage_slices.items())):
            yield row_id, user_id, starts_at.date(), starts_at, metric, quantity, self.now, self.now

    # --- minions and training ------------------------------------------------

    def plan_minions_and_jobs(self) -> None:
        """Jobs and XP events are drawn before minions are written: a minion's xp is their sum."""
        rng = self.rng
        minion_ids = self.ids("minions", self.n_minions)
        self.minion_owner = [self.user_id(int(rng.random() * self.n_users)) for _ in minion_ids]
        self.minion_model = [rng.choice(self.model_ids) for _ in minion_ids]
        self.planned_jobs: list[tuple] = []
        succeeded_job_of: dict[int, tuple[int, datetime]] = {}
        statuses = _pool(JOB_STATUS_MIX)
        for job_id in self.ids("training_jobs", self.n_jobs):
            job = self.draw_job(job_id, rng.choice(statuses))
            self.planned_jobs.append(job)
            minion_id = job[2]
            if job[8] == "succeeded" and minion_id is not None:
                succeeded_job_of.setdefault(minion_id, (job_id, job[15]))
        self.planned_xp_events: list[tuple] = []
        self.minion_xp: list[int] = []
        event_ids = itertools.count(self.first_ids["minion_xp_events"])
        reasons = list(XP_REASONS.items())
        for index, minion_id in enumerate(minion_ids):
            total = 0
            for number in range(xp_event_count(index)):
                if number == 0 and minion_id in succeeded_job_of:
                    job_id, at = succeeded_job_of[minion_id]
                    reason, delta = "training_job.succeeded", 150
                else:
                    job_id, at = None, self.moment(60, 60)
                    reason, (low, high) = rng.choice(reasons)
                    delta = rng.randint(low, high)
                total += delta
                self.planned_xp_events.append((next(event_ids), minion_id, delta, reason, job_id, at, at))
            self.minion_xp.append(total)

    def draw_job(self, job_id: int, status: str) -> tuple:
        rng = self.rng
        if self.n_minions and rng.random() < 0.8:
            index = int(rng.random() * self.n_minions)
            minion_id = self.first_ids["minions"] + index
            user_id, model_id = self.minion_owner[index], self.minion_model[index]
        else:
            minion_id, user_id, model_id = None, self.user_id(int(rng.random() * self.n_users)), rng.choice(self.model_ids)
        provider_id = external_id = None
        if self.hosted_models and rng.random() < 0.3:
            model_id, provider_id = rng.choice(self.hosted_models)
            external_id = f"ftjob-{rng.getrandbits(64):016x}"
        queued = self.moment(60, 59.9) if status not in ("queued", "running") else self.moment(0.5, 0.5)
        started = finished = error = None
        progress, metrics = 0.0, {}
        if status != "queued":
            started = queued + timedelta(minutes=1 + rng.random() * 30)
        if status == "running":
            progress = round(0.05 + rng.random() * 0.9, 3)
        elif status in ("succeeded", "failed", "canceled"):
            finished = started + timedelta(minutes=5 + rng.random() * 360)
            progress = 1.0 if status == "succeeded" else round(rng.random() * 0.9, 3)
            error = rng.choice(JOB_ERRORS) if status == "failed" else None
        if started:
            loss = round(2.5 - 1.6 * progress + rng.random() * 0.1, 4)
            metrics = {"loss": loss, "eval_loss": round(loss * 1.07, 4)}
        hyperparameters = {"epochs": rng.randint(1, 5), "learning_rate": rng.choice((1e-5, 5e-5, 1e-4, 2e-4)),
                           "batch_size": rng.choice((8, 16, 32))}
        return (
            job_id, user_id, minion_id, model_id, "external" if provider_id else "internal", provider_id,
            external_id, f"{rng.choice(JOB_TASKS)} #{job_id}", status, progress, hyperparameters, metrics,
            error, queued, started, finished, queued, finished or started or queued,
        )

    def minions(self) -> Iterator[tuple]:
        rng = self.rng
        statuses = ("idle", "active", "active", "training", "retired")
        for index, minion_id in enumerate(self.ids("minions", self.n_minions)):
            born = self.moment(90, 30)
            xp = self.minion_xp[index]
            attributes = {"color": rng.choice(MINION_COLORS), "temperament": rng.choice(MINION_TEMPERAMENTS)}
            yield (minion_id, self.minion_owner[index], self.minion_model[index],
                   f"{rng.choice(MINION_ADJECTIVES)} {rng.choice(MINION_NOUNS)}", xp, level_for_xp(xp),
                   rng.choice(statuses), attributes, born, born)

    def training_jobs(self) -> Iterator[tuple]:
        return iter(self.planned_jobs)

    def xp_events(self) -> Iterator[tuple]:
        return iter(self.planned_xp_events)

    def xp_gains(self) -> Iterator[tuple]:
        """The leaderboard's week and month gains of the XP events, as award_xp keeps them."""
        gains = gains_from_events((event[1], event[2], event[5]) for event in self.planned_xp_events)
        for row_id, gain in zip(self.ids("minion_xp_gains", len(gains)), gains):
            yield (row_id, gain["minion_id"], gain["period"], gain["period_start"], gain["gained"],
                   self.now, self.now)

    def job_events(self) -> Iterator[tuple]:
        """``events`` log lines shared out evenly over the jobs, in time order within each job."""
        rng = self.rng
        event_ids = itertools.count(self.first_ids["training_job_events"])
        per_job, extra = divmod(self.n_events, self.n_jobs) if self.n_jobs else (0, 0)
        for number, job in enumerate(self.planned_jobs):
            count = per_job + (number < extra)
            job_id, status, final_progress = job[0], job[8], job[9]
            queued, started, finished = job[13], job[14], job[15]
            begin, end = started or queued, finished or (self.now if started else queued)
            for step in range(count):
                share = (step + 1) / count
                at = begin + (end - begin) * share
                if status == "queued":
                    yield next(event_ids), job_id, "info", "Waiting for a runner", 0.0, {}, at, at
                    continue
                progress = round(final_progress * share, 3)
                level, message = "info", f"Step {int(progress * 1000)} of 1000"
                if step == count - 1 and status == "failed":
                    level, message = "error", job[12]
                elif step == count - 1 and status == "canceled":
                    level, message = "warning", "Canceled by the owner"
                metrics = {"loss": round(2.5 - 1.6 * progress + rng.random() * 0.1, 4)}
                yield next(event_ids), job_id, level, message, progress, metrics, at, at


def _batches(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _SQLiteLoader:
    """Batched executemany of a Core insert."""

    def __init__(self, connection: sa.Connection, batch: int, progress: Callable[[int], None]) -> None:
        self.connection, self.batch, self.progress = connection, batch, progress

    def load(self, table_name: str, rows: Iterable[tuple]) -> int:
        table, columns = db.metadata.tables[table_name], COLUMNS[table_name]
        count = 0
        for chunk in _batches(rows, self.batch):
            self.connection.execute(table.insert(), [dict(zip(columns, row)) for row in chunk])
            count += len(chunk)
            self.progress(len(chunk))
        return count

    @contextmanager
    def checks_deferred(self, table_names: Iterable[str]) -> Iterator[None]:
        """SQLite checks the foreign keys at commit; the pragma ends with the transaction."""
        self.connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        yield

    def finish(self, rows: dict[str, int]) -> None:
        """Nothing to do: SQLite's rowid carries on from the largest id."""


class _CopyLoader(_SQLiteLoader):
    """PostgreSQL binary COPY through psycopg 3, on the session's own connection and transaction."""

    def __init__(self, connection: sa.Connection, batch: int, progress: Callable[[int], None]) -> None:
        super().__init__(connection, batch, progress)
        # The index builds at the end sort in memory instead of on disk.
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")

    def load(self, table_name: str, rows: Iterable[tuple]) -> int:
        columns = COLUMNS[table_name]
        # Binary, because it is about four times cheaper per row to encode than text.
        type_oids = dict(self.connection.execute(sa.text(
            "SELECT attname, CAST(atttypid AS integer) FROM pg_attribute"
            " WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
        ), {"table": table_name}).all())
        count = 0
        with self.connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types([type_oids[column] for column in columns])
                for chunk in _batches(rows, self.batch):
                    for row in chunk:
                        copy.write_row(row)
                    count += len(chunk)
                    self.progress(len(chunk))
        return count

    @contextmanager
    def checks_deferred(self, table_names: Iterable[str]) -> Iterator[None]:
        """Drop the tables' foreign keys and non-unique indexes for the load, then restore them.

        PostgreSQL's own advice for populating a database: one index build and one
        foreign-key check over a whole table cost far less than keeping them up row
        by row (here more than half the load time). Primary keys and unique indexes
        stay, so duplicates are refused as they arrive. Names and definitions come
        from the catalog and it all happens inside the transaction, so the schema is
        the same afterwards, or untouched if the load fails. The tables are locked
        until the commit.
        """
        foreign_keys, indexes = [], []
        for table_name in table_names:
            table = {"table": table_name}
            foreign_keys += self.connection.execute(sa.text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = CAST(:table AS regclass) AND contype = 'f' ORDER BY conname"
            ), table).all()
            indexes += self.connection.execute(sa.text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = CAST(:table AS regclass) AND NOT i.indisunique ORDER BY c.relname"
            ), table).all()
        for table_name, name, _definition in foreign_keys:
            self.connection.exec_driver_sql(f'ALTER TABLE {table_name} DROP CONSTRAINT "{name}"')
        for name, _definition in indexes:
            self.connection.exec_driver_sql(f'DROP INDEX "{name}"')
        yield
        for _name, definition in indexes:
            self.connection.exec_driver_sql(definition)
        for table_name, name, definition in foreign_keys:
            self.connection.exec_driver_sql(f'ALTER TABLE {table_name} ADD CONSTRAINT "{name}" {definition}')

    def finish(self, rows: dict[str, int]) -> None:
        """Move each sequence past the ids written here, so the app's next insert does not collide."""
        for table_name in rows:
            self.connection.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), max(id)) FROM {table_name}"
            )
