"""The one place that decides quotas: may this user create or start this now?

A plan's ``quotas`` maps a key to a limit (a missing key means unlimited), plus
options such as ``minions_count_archived``, and ``overage``: for each metered quota that is
billed past its limit instead of blocked, its price (``{"tokens": {"per": 1000, "cents": 2}}``
bills 2 cents for every 1,000 tokens, or part of them, past the limit). A quota without a price
blocks at its limit. A user without a live subscription is
held to the plan a new account starts on (``SIGNUP_PLAN``). The services that
create minions, datasets and jobs call :func:`require` in the transaction that
inserts the row: it first locks the owner's user row, so concurrent requests of
one user are counted one after another and a quota of 2 leaves exactly 2.

It reads the models of the domains it counts and imports none of their services,
so every service may import it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.orm import joinedload

from webapp.accounts.models import User
from webapp.billing.models import LIVE_SUBSCRIPTION_STATUSES, Plan, UserSubscription
from webapp.datasets.models import Dataset
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.models import UsageRollup
from webapp.minions.models import Minion
from webapp.training.models import ACTIVE_JOB_STATUSES, TrainingJob

# Quota key -> the usage metrics whose sums count against it in the current period.
METERED_QUOTAS = {
    "tokens": ("input_tokens", "output_tokens"),
    "requests": ("requests",),
    "training_minutes": ("training_minutes",),
}
QUOTA_LABELS = {
    "tokens": "Tokens", "requests": "Requests", "training_minutes": "Training minutes",
    "training_jobs": "Training jobs", "concurrent_jobs": "Jobs at once", "minions": "Minions",
    "datasets": "Datasets", "dataset_bytes": "Bytes per dataset file",
}
# Limits a plan may leave out and still get: quota key -> the setting that holds the default.
# (Any other key a plan leaves out is unlimited; a plan sets a key to null to lift a default.)
CONFIGURED_DEFAULTS = {"datasets": "DATASETS_PER_USER", "dataset_bytes": "DATASET_MAX_BYTES"}
# Where a plan has no period of its own (no live subscription), periods are this long from the account's start.
FALLBACK_PERIOD = timedelta(days=30)


# What happens when a quota is reached.
BLOCK, OVERAGE = "block", "overage"


@dataclass(frozen=True)
class OveragePrice:
    """The price of use past a metered quota's limit: ``cents`` for every ``per`` units or part of them."""

    per: int
    cents: int

    def amount_cents(self, quantity: int) -> int:
        return math.ceil(quantity / self.per) * self.cents if quantity > 0 else 0


class QuotaExceeded(Exception):
    """Creating or starting this would go past the plan's limit; nothing was changed."""

    def __init__(self, key: str, limit: int) -> None:
        self.key, self.limit = key, limit
        super().__init__(f"Your plan allows {limit:,} {QUOTA_LABELS.get(key, key).lower()}; "
                         f"choose a larger plan to go further.")


@dataclass(frozen=True)
class Allowance:
    """What the user's plan allows, and the period that period-bound quotas count in."""

    quotas: dict[str, Any]
    period_start: datetime
    period_end: datetime
    # The live subscription these terms come from; None on the sign-up plan's fallback periods.
    subscription_id: int | None = None

    def limit(self, key: str) -> int | None:
        value = self.quotas.get(key)
        return None if value is None else int(value)

    def overage_price(self, key: str) -> OveragePrice | None:
        """The price of use past ``key``'s limit, or None where the plan blocks at the limit."""
        price = (self.quotas.get("overage") or {}).get(key)
        return OveragePrice(int(price["per"]), int(price["cents"])) if price else None

    def at_limit(self, key: str) -> str:
        """BLOCK (the work is refused) or OVERAGE (allowed, the excess billed) once ``key`` is reached."""
        return OVERAGE if key in METERED_QUOTAS and self.overage_price(key) else BLOCK

    def overage(self, key: str, used: int) -> Overage | None:
        """What ``used`` units of ``key`` cost past its limit, or None where nothing is billed."""
        limit, price = self.limit(key), self.overage_price(key)
        if limit is None or price is None or self.at_limit(key) != OVERAGE or used <= limit:
            return None
        return Overage(key, used - limit, price)

    def covers(self, usage: dict[str, int]) -> bool:
        """True when every quota in ``usage`` (key -> use now) is within this plan's limit."""
        return all((limit := self.limit(key)) is None or used <= limit for key, used in usage.items())


@dataclass(frozen=True)
class Overage:
    """Use of a metered quota past its limit, and its price."""

    key: str
    quantity: int
    price: OveragePrice

    @property
    def amount_cents(self) -> int:
        return self.price.amount_cents(self.quantity)


def with_defaults(quotas: dict[str, Any] | None) -> dict[str, Any]:
    """The plan's quotas over the configured defaults."""
    defaults = {key: current_app.config[setting] for key, setting in CONFIGURED_DEFAULTS.items()}
    return {**defaults, **(quotas or {})}


def allowance(user: User, now: datetime | None = None) -> Allowance:
    return allowances([user.id], now, {user.id: user.created_at})[user.id]


def allowances(user_ids: Iterable[int], now: datetime | None = None,
               created: dict[int, datetime] | None = None) -> dict[int, Allowance]:
    """Each existing user's allowance, in at most three queries however many users (the metering API's batches).

    ``created`` holds the users' created_at where the caller has them, sparing their query.
    """
    now = now or utcnow()
    user_ids = set(user_ids)
    subscriptions = db.session.scalars(
        select(UserSubscription).options(joinedload(UserSubscription.plan))
        .where(UserSubscription.user_id.in_(user_ids), UserSubscription.status.in_(LIVE_SUBSCRIPTION_STATUSES))
    )
    terms = {subscription.user_id: Allowance(with_defaults(subscription.plan.quotas),
                                             subscription.current_period_start, subscription.current_period_end,
                                             subscription.id)
             for subscription in subscriptions}
    unsubscribed = user_ids - terms.keys()
    if unsubscribed:
        plan = db.session.scalars(select(Plan).where(Plan.code == current_app.config["SIGNUP_PLAN"])).first()
        quotas = with_defaults(plan.quotas if plan else None)
        if created is None:
            created = dict(db.session.execute(select(User.id, User.created_at).where(User.id.in_(unsubscribed))).all())
        for user_id, created_at in ((user_id, created[user_id]) for user_id in unsubscribed if user_id in created):
            start = created_at + (now - created_at) // FALLBACK_PERIOD * FALLBACK_PERIOD
            terms[user_id] = Allowance(quotas, start, start + FALLBACK_PERIOD)
    return terms


def period_overages(user: User, terms: Allowance) -> list[Overage]:
    """Each metered quota used past its limit over ``terms``' period, where the plan bills overage."""
    charged = (key for key in METERED_QUOTAS if terms.at_limit(key) == OVERAGE and terms.limit(key) is not None)
    return [overage for key in charged if (overage := terms.overage(key, used(user, key, terms)))]


def used(user: User, key: str, terms: Allowance) -> int:
    """How much of quota ``key`` the user has used: counted rows, or metered usage this period."""
    return usage(user.id, [key], terms)[key]


def usage(user_id: int, keys: Iterable[str], terms: Allowance) -> dict[str, int]:
    """How much of each quota in ``keys`` the user has used, all in one query."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    row = db.session.execute(select(*(usage_count(user_id, key, terms).label(key) for key in keys))).one()
    return {key: int(row._mapping[key] or 0) for key in keys}


def usage_count(user_id: int, key: str, terms: Allowance):
    """The scalar subquery counting quota ``key``'s use: rows, or metered usage in the period's rollup slices."""
    if key in METERED_QUOTAS:
        # Rollup slices are cut at period boundaries (see UsageRollup), so those starting in the period are its usage.
        statement = select(func.sum(UsageRollup.quantity)).where(
            UsageRollup.user_id == user_id, UsageRollup.metric.in_(METERED_QUOTAS[key]),
            UsageRollup.starts_at >= terms.period_start, UsageRollup.starts_at < terms.period_end)
    elif key == "minions":
        statement = select(func.count(Minion.id)).where(Minion.owner_user_id == user_id)
        if not terms.quotas.get("minions_count_archived", False):
            statement = statement.where(Minion.status != "retired")
    elif key == "datasets":
        statement = select(func.count(Dataset.id)).where(Dataset.owner_user_id == user_id)
    elif key == "training_jobs":
        statement = select(func.count(TrainingJob.id)).where(
            TrainingJob.user_id == user_id, TrainingJob.queued_at >= terms.period_start,
            TrainingJob.queued_at < terms.period_end)
    elif key == "concurrent_jobs":
        statement = select(func.count(TrainingJob.id)).where(
            TrainingJob.user_id == user_id, TrainingJob.status.in_(ACTIVE_JOB_STATUSES))
    else:
        raise KeyError(f"no way to count quota {key!r}")
    return statement.scalar_subquery()


def period_usage(user_id: int, terms: Allowance) -> dict[str, int]:
    """Each metric's use in the allowance's period: one indexed range of the daily rollup, not the raw records.

    Rollup slices are cut at period boundaries (see UsageRollup), so the slices that start in the
    period hold exactly its usage.
    """
    rows = db.session.execute(
        select(UsageRollup.metric, func.sum(UsageRollup.quantity))
        .where(UsageRollup.user_id == user_id, UsageRollup.starts_at >= terms.period_start,
               UsageRollup.starts_at < terms.period_end)
        .group_by(UsageRollup.metric))
    return {metric: int(total) for metric, total in rows}


def lock_owner(user: User) -> None:
    """Hold the user's row until this transaction ends, so quota checks of one user queue up.

    PostgreSQL locks the row; SQLite takes its database write lock with a no-op update.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(select(User.id).where(User.id == user.id).with_for_update())
    else:
        db.session.execute(text("UPDATE users SET id = id WHERE id = :id"), {"id": user.id})


def require(user: User, key: str, adding: int = 1, now: datetime | None = None) -> Allowance:
    """Lock the owner, then raise QuotaExceeded if ``adding`` more of ``key`` would pass the limit."""
    lock_owner(user)
    return check(user, key, adding, now)


def check(user: User, key: str, adding: int = 1, now: datetime | None = None) -> Allowance:
    """Raise QuotaExceeded if ``adding`` more of ``key`` would pass a limit that blocks, without locking.

    Only an early answer before long work (an upload): the insert itself must still call require().
    A metered quota billed as overage never refuses.
    """
    terms = allowance(user, now)
    limit = terms.limit(key)
    if limit is not None and terms.at_limit(key) == BLOCK and used(user, key, terms) + adding > limit:
        raise QuotaExceeded(key, limit)
    return terms
