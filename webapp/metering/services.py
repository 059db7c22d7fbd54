"""Usage: the one path that records it (the metering API, training minutes, the playground), its daily
rollup, the check of the rollup against the raw records, and the service tokens of the metering API.

Every function adds to the current session and leaves the commit to its caller, so a batch and
its rollup are one transaction: both are kept, or neither.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from webapp import quotas
from webapp.accounts.audit import record
from webapp.billing.models import UsageRecord
from webapp.db import utc_day, utcnow
from webapp.extensions import db
from webapp.metering.models import MeteringToken, UsageRollup
from webapp.providers.models import AIModel, Provider
from webapp.security import hash_token, new_token

# What the metering API reports; training_minutes are recorded by the console itself.
API_METRICS = ("input_tokens", "output_tokens", "requests")


@dataclass(frozen=True)
class UsageEvent:
    """One piece of usage to record: ``event_id`` is the sender's idempotency key."""

    event_id: str
    user_id: int
    metric: str
    quantity: int
    occurred_at: datetime
    # A model id, or "provider-slug/model-key"; None where no model is involved.
    model: int | str | None = None


@dataclass(frozen=True)
class Refusal:
    event_id: str
    reason: str


@dataclass
class Recorded:
    """What became of a batch: events stored now, events already stored (or twice in it), events refused."""

    accepted: int = 0
    duplicated: int = 0
    refused: list[Refusal] = field(default_factory=list)


def record_usage(events: Sequence[UsageEvent], now: datetime | None = None) -> Recorded:
    """Record ``events`` and add them to the daily rollup, in the caller's transaction: THE way usage is written.

    An event id already stored (or repeated in the batch) is skipped and counted as duplicated. An
    event is refused, with its reason, for an unknown user or model, an ``occurred_at`` before the
    user's open period, or one more than METERING_MAX_FUTURE_SECONDS ahead of ``now``. Everything
    else is stored; concurrent batches with the same ids store each event once.
    """
    now = now or utcnow()
    fresh, repeated = first_of_each_id(events)
    terms = quotas.allowances({event.user_id for event in fresh}, now)
    models = model_ids({event.model for event in fresh if event.model is not None})
    latest = now + timedelta(seconds=current_app.config["METERING_MAX_FUTURE_SECONDS"])
    rows, refused = [], []
    for event in fresh:
        reason = refusal(event, terms.get(event.user_id), models, latest)
        if reason:
            refused.append(Refusal(event.event_id, reason))
            continue
        rows.append({"event_id": event.event_id, "user_id": event.user_id, "metric": event.metric,
                     "quantity": event.quantity, "occurred_at": event.occurred_at,
                     "model_id": models.get(event.model), "subscription_id": terms[event.user_id].subscription_id})
    stored = write_usage(rows, terms)
    return Recorded(accepted=stored, duplicated=repeated + len(rows) - stored, refused=refused)


def first_of_each_id(events: Sequence[UsageEvent]) -> tuple[list[UsageEvent], int]:
    """The events with an id not seen earlier in the batch, and how many were left out."""
    seen: dict[str, UsageEvent] = {}
    for event in events:
        seen.setdefault(event.event_id, event)
    return list(seen.values()), len(events) - len(seen)


def refusal(event: UsageEvent, terms: quotas.Allowance | None, models: dict[Any, int], latest: datetime) -> str | None:
    """Why ``event`` cannot be recorded, in words for the sender; None when it can."""
    if terms is None:
        return f"There is no user #{event.user_id}."
    if event.model is not None and event.model not in models:
        return (f"There is no model #{event.model}." if isinstance(event.model, int)
                else f"There is no model {event.model!r} (provider slug / model key).")
    if event.occurred_at < terms.period_start:
        return (f"occurred_at {event.occurred_at.isoformat()} is before the user's open period, which started "
                f"{terms.period_start.isoformat()}; a closed period's usage can no longer be recorded.")
    if event.occurred_at > latest:
        return (f"occurred_at {event.occurred_at.isoformat()} is more than "
                f"{current_app.config['METERING_MAX_FUTURE_SECONDS']} seconds in the future.")
    return None


def model_ids(references: Iterable[int | str]) -> dict[int | str, int]:
    """The model id each existing reference (a model id, or "provider-slug/model-key") names."""
    ids = {reference for reference in references if isinstance(reference, int)}
    keys = {tuple(reference.split("/", 1)) for reference in references
            if isinstance(reference, str) and "/" in reference}
    found: dict[int | str, int] = {}
    if ids:
        found.update({model_id: model_id for model_id in db.session.scalars(select(AIModel.id).where(AIModel.id.in_(ids)))})
    if keys:
        rows = db.session.execute(
            select(Provider.slug, AIModel.model_key, AIModel.id).join(AIModel, AIModel.provider_id == Provider.id)
            .where(Provider.slug.in_({slug for slug, _ in keys}), AIModel.model_key.in_({key for _, key in keys})))
        found.update({f"{slug}/{key}": model_id for slug, key, model_id in rows if (slug, key) in keys})
    return found


def store_usage(rows: list[dict[str, Any]], now: datetime | None = None) -> int:
    """Write usage rows as they are (a seed's history, a test's records) through the same insert and rollup.

    Unlike record_usage nothing is refused: the caller vouches for users, models and times.
    """
    return write_usage(rows, quotas.allowances({row["user_id"] for row in rows}, now))


def write_usage(rows: list[dict[str, Any]], terms: dict[int, quotas.Allowance]) -> int:
    """Insert the rows whose event id is new and add exactly those to the rollup; how many were new.

    One multi-row INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING tells which ids were new,
    and one upsert adds them to the rollup, summed per slice. Rows go in event id order and slices
    in key order, so concurrent batches lock in the same order and wait for each other, never deadlock.
    """
    if not rows:
        return 0
    rows = sorted(rows, key=itemgetter("event_id"))
    if db.session.get_bind().dialect.name == "postgresql":
        new_ids = set(db.session.scalars(POSTGRESQL_INSERT_USAGE, columns(rows, USAGE_COLUMNS, utcnow())))
    else:
        statement = sqlite_insert(UsageRecord.__table__).on_conflict_do_nothing(index_elements=["event_id"])
        new_ids = set(db.session.scalars(statement.returning(UsageRecord.event_id), rows))
    slices: dict[tuple[int, datetime, str], int] = defaultdict(int)
    for row in rows:
        if row["event_id"] in new_ids:
            allowance = terms.get(row["user_id"])
            boundaries = (allowance.period_start, allowance.period_end) if allowance else ()
            slices[(row["user_id"], slice_start(row["occurred_at"], boundaries), row["metric"])] += row["quantity"]
    add_to_rollup(slices)
    return len(new_ids)


# On PostgreSQL a batch travels as one array per column: a handful of parameters instead of
# thousands, so parsing and planning cost the same for 1 row or 1,000.
USAGE_COLUMNS = ("event_id", "user_id", "subscription_id", "model_id", "metric", "quantity", "occurred_at")
POSTGRESQL_INSERT_USAGE = text("""
    INSERT INTO usage_records (event_id, user_id, subscription_id, model_id, metric, quantity, occurred_at,
                               created_at, updated_at, lock_version)
    SELECT batch.event_id, batch.user_id, batch.subscription_id, batch.model_id, batch.metric, batch.quantity,
           batch.occurred_at, :now, :now, 1
    FROM unnest(CAST(:event_id AS varchar[]), CAST(:user_id AS integer[]), CAST(:subscription_id AS integer[]),
                CAST(:model_id AS integer[]), CAST(:metric AS varchar[]), CAST(:quantity AS bigint[]),
                CAST(:occurred_at AS timestamptz[])) WITH ORDINALITY
         AS batch(event_id, user_id, subscription_id, model_id, metric, quantity, occurred_at, position)
    ORDER BY batch.position
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
""")
ROLLUP_COLUMNS = ("user_id", "starts_at", "day", "metric", "quantity")
POSTGRESQL_ADD_TO_ROLLUP = text("""
    INSERT INTO usage_rollups (user_id, starts_at, day, metric, quantity, created_at, updated_at, lock_version)
    SELECT slice.user_id, slice.starts_at, slice.day, slice.metric, slice.quantity, :now, :now, 1
    FROM unnest(CAST(:user_id AS integer[]), CAST(:starts_at AS timestamptz[]), CAST(:day AS date[]),
                CAST(:metric AS varchar[]), CAST(:quantity AS bigint[])) WITH ORDINALITY
         AS slice(user_id, starts_at, day, metric, quantity, position)
    ORDER BY slice.position
    ON CONFLICT (user_id, starts_at, metric)
    DO UPDATE SET quantity = usage_rollups.quantity + excluded.quantity, updated_at = excluded.updated_at
""")


def columns(rows: list[dict[str, Any]], names: tuple[str, ...], now: datetime) -> dict[str, Any]:
    """The rows as one list per column (what unnest takes), plus ``now`` for the timestamps."""
    return {"now": now, **{name: [row.get(name) for row in rows] for name in names}}


def slice_start(moment: datetime, boundaries: Iterable[datetime]) -> datetime:
    """Where the rollup slice holding ``moment`` starts: its UTC midnight, or a later period boundary of that day."""
    moment = moment.astimezone(timezone.utc)
    start = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
    for boundary in sorted(boundaries):
        if start < boundary <= moment:
            start = boundary
    return start


def add_to_rollup(slices: dict[tuple[int, datetime, str], int]) -> None:
    """Add each (user, slice start, metric) quantity to its rollup row, creating the row if needed."""
    if not slices:
        return
    now = utcnow()
    values = [{"user_id": user_id, "starts_at": starts_at, "day": starts_at.date(), "metric": metric,
               "quantity": quantity, "created_at": now, "updated_at": now}
              for (user_id, starts_at, metric), quantity in sorted(slices.items())]
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(POSTGRESQL_ADD_TO_ROLLUP, columns(values, ROLLUP_COLUMNS, now))
        return
    statement = sqlite_insert(UsageRollup.__table__)
    rollup = UsageRollup.__table__.c
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[rollup.user_id, rollup.starts_at, rollup.metric],
        set_={"quantity": rollup.quantity + statement.excluded.quantity, "updated_at": now},
    ), values)


# --- reading the rollup -----------------------------------------------------------------


def daily_totals_statement(user_id: int, start: datetime, end: datetime) -> Select:
    """Each (UTC day, metric) sum of the rollup slices starting in [start, end): columns day, metric, total."""
    return (
        select(UsageRollup.day, UsageRollup.metric, func.sum(UsageRollup.quantity).label("total"))
        .where(UsageRollup.user_id == user_id, UsageRollup.starts_at >= start, UsageRollup.starts_at < end)
        .group_by(UsageRollup.day, UsageRollup.metric)
    )


def daily_totals(user_id: int, start: datetime, end: datetime) -> dict[tuple[date, str], int]:
    """Each (UTC day, metric) sum of the rollup slices starting in [start, end)."""
    rows = db.session.execute(daily_totals_statement(user_id, start, end))
    return {(day, metric): int(total) for day, metric, total in rows}


@dataclass(frozen=True)
class QuotaStanding:
    """One metered quota as the gateway needs it: what is left and whether work is refused."""

    key: str
    metrics: tuple[str, ...]
    limit: int | None
    used: int
    at_limit: str
    overage_price: quotas.OveragePrice | None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def blocked(self) -> bool:
        return self.limit is not None and self.at_limit == quotas.BLOCK and self.used >= self.limit


def standings(terms: quotas.Allowance, usage: dict[str, int]) -> list[QuotaStanding]:
    """Every metered quota's standing from the period's usage per metric."""
    return [QuotaStanding(key, metrics, terms.limit(key), sum(usage.get(metric, 0) for metric in metrics),
                          terms.at_limit(key), terms.overage_price(key))
            for key, metrics in quotas.METERED_QUOTAS.items()]


def allowance_answer(user_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    """The allowance API's answer for ``user_id`` (None: no such user): what is left this period, what is blocked."""
    terms = quotas.allowances([user_id], now).get(user_id)
    if terms is None:
        return None
    quota_standings = standings(terms, quotas.period_usage(user_id, terms))
    return {
        "user_id": user_id,
        "period_start": terms.period_start.isoformat(),
        "period_end": terms.period_end.isoformat(),
        "quotas": {standing.key: {
            "metrics": list(standing.metrics), "limit": standing.limit, "used": standing.used,
            "remaining": standing.remaining, "at_limit": standing.at_limit, "blocked": standing.blocked,
            "overage_price": (None if standing.overage_price is None else
                              {"per": standing.overage_price.per, "cents": standing.overage_price.cents}),
        } for standing in quota_standings},
        "blocked": {metric: standing.blocked for standing in quota_standings for metric in standing.metrics
                    if metric in API_METRICS},
    }


# --- checking the rollup against the raw records -----------------------------------------


def as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


@dataclass(frozen=True)
class RollupMismatch:
    user_id: int
    day: date
    metric: str
    rollup: int
    raw: int


def rollup_mismatches() -> list[RollupMismatch]:
    """Every (user, UTC day, metric) whose rollup differs from the sum of its raw records (two aggregate reads)."""
    day = utc_day(UsageRecord.occurred_at)
    raw = {(user_id, as_date(raw_day), metric): int(total) for user_id, raw_day, metric, total in db.session.execute(
        select(UsageRecord.user_id, day, UsageRecord.metric, func.sum(UsageRecord.quantity))
        .group_by(UsageRecord.user_id, day, UsageRecord.metric))}
    rolled = {(user_id, as_date(rolled_day), metric): int(total)
              for user_id, rolled_day, metric, total in db.session.execute(
                  select(UsageRollup.user_id, UsageRollup.day, UsageRollup.metric, func.sum(UsageRollup.quantity))
                  .group_by(UsageRollup.user_id, UsageRollup.day, UsageRollup.metric))}
    return [RollupMismatch(*key, rollup=rolled.get(key, 0), raw=raw.get(key, 0))
            for key in sorted(raw.keys() | rolled.keys()) if rolled.get(key, 0) != raw.get(key, 0)]


def repair_rollup(mismatches: list[RollupMismatch], now: datetime | None = None) -> None:
    """Rebuild each mismatched (user, day, metric) from its raw records, cut at the user's current period, audited."""
    terms = quotas.allowances({mismatch.user_id for mismatch in mismatches}, now)
    for mismatch in mismatches:
        start = datetime(mismatch.day.year, mismatch.day.month, mismatch.day.day, tzinfo=timezone.utc)
        db.session.execute(delete(UsageRollup).where(
            UsageRollup.user_id == mismatch.user_id, UsageRollup.day == mismatch.day,
            UsageRollup.metric == mismatch.metric))
        allowance = terms.get(mismatch.user_id)
        boundaries = (allowance.period_start, allowance.period_end) if allowance else ()
        slices: dict[tuple[int, datetime, str], int] = defaultdict(int)
        for occurred_at, quantity in db.session.execute(
                select(UsageRecord.occurred_at, UsageRecord.quantity).where(
                    UsageRecord.user_id == mismatch.user_id, UsageRecord.metric == mismatch.metric,
                    UsageRecord.occurred_at >= start, UsageRecord.occurred_at < start + timedelta(days=1))):
            slices[(mismatch.user_id, slice_start(occurred_at, boundaries), mismatch.metric)] += quantity
        add_to_rollup(slices)
        record("usage_rollup.repair", ("users", mismatch.user_id),
               {"day": mismatch.day.isoformat(), "metric": mismatch.metric, "quantity": [mismatch.rollup, mismatch.raw]})


# --- service tokens ------------------------------------------------------------------------


def create_token(name: str) -> tuple[MeteringToken, str]:
    """A metering service token; only its hash is stored, so the token is shown once."""
    token = new_token()
    service = MeteringToken(name=name, token_hash=hash_token(token))
    db.session.add(service)
    db.session.flush()
    record("metering_token.create", service, {"name": name})
    return service, token


def service_for_token(token: str | None) -> MeteringToken | None:
    if not token:
        return None
    return db.session.scalars(
        select(MeteringToken).where(MeteringToken.token_hash == hash_token(token), MeteringToken.is_active.is_(True))
    ).first()


# --- the metering API's body -----------------------------------------------------------------


class InvalidBatch(Exception):
    """A batch the API refuses whole (nothing is stored); ``status`` is the answer's code."""

    status = 422


class BatchTooLarge(InvalidBatch):
    status = 413


EVENT_FIELDS = ("id", "user_id", "model", "metric", "quantity", "occurred_at")
MAX_QUANTITY = 2**63 - 1  # usage_records.quantity is a BIGINT
MAX_MODEL_REFERENCE = 241  # a provider slug (120), "/", a model key (120)
MAX_TIMESTAMP_LENGTH = 40


def parse_batch(body: Any, max_events: int) -> list[UsageEvent]:
    """``{"events": [...]}`` checked event by event and field by field; InvalidBatch names the first problem."""
    if not isinstance(body, dict) or set(body) != {"events"}:
        raise InvalidBatch('The body must be {"events": [...]}, with no other field.')
    events = body["events"]
    if not isinstance(events, list) or not events:
        raise InvalidBatch("events must be a non-empty list.")
    if len(events) > max_events:
        raise BatchTooLarge(f"events holds {len(events)} events; at most {max_events} fit in one batch.")
    return [parsed_event(event, f"events[{index}]") for index, event in enumerate(events)]


def parsed_event(event: Any, where: str) -> UsageEvent:
    if not isinstance(event, dict):
        raise InvalidBatch(f"{where} must be an object.")
    unknown = set(event) - set(EVENT_FIELDS)
    if unknown:
        raise InvalidBatch(f"{where} has unknown fields: {', '.join(sorted(unknown))[:300]}.")
    missing = [name for name in EVENT_FIELDS if name not in event]
    if missing:
        raise InvalidBatch(f"{where} lacks {', '.join(missing)}.")
    event_id, model = event["id"], event["model"]
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 64:
        raise InvalidBatch(f"{where}.id must be a non-blank string of at most 64 characters.")
    if event["metric"] not in API_METRICS:
        raise InvalidBatch(f"{where}.metric must be one of {', '.join(API_METRICS)}.")
    if not (whole_number(model, 1, 2**31 - 1)
            or isinstance(model, str) and "/" in model and 3 <= len(model) <= MAX_MODEL_REFERENCE):
        raise InvalidBatch(f"{where}.model must be a model id, or a provider slug and model key "
                           f'such as "openai/gpt-4o-mini".')
    if not whole_number(event["user_id"], 1, 2**31 - 1):
        raise InvalidBatch(f"{where}.user_id must be a user id (a whole number from 1).")
    if not whole_number(event["quantity"], 0, MAX_QUANTITY):
        raise InvalidBatch(f"{where}.quantity must be a whole number from 0 to {MAX_QUANTITY}.")
    return UsageEvent(event_id=event_id, user_id=event["user_id"], metric=event["metric"],
                      quantity=event["quantity"], occurred_at=timestamp(event["occurred_at"], f"{where}.occurred_at"),
                      model=model)


def whole_number(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def timestamp(value: Any, where: str) -> datetime:
    """An ISO 8601 time with its UTC offset (``2026-12-01T09:30:00Z``), as an aware UTC datetime."""
    try:
        if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
            raise ValueError
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidBatch(f'{where} must be an ISO 8601 time with its UTC offset, e.g. "2026-12-01T09:30:00Z".') from None
    if moment.tzinfo is None:
        raise InvalidBatch(f"{where} must carry its UTC offset (Z or +hh:mm).")
    return moment.astimezone(timezone.utc)
