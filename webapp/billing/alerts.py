"""Usage alerts: a mail, and a banner in the console, when a metered quota crosses 50%, 80% and 100%.

Each crossing is a ``usage_alerts`` row, unique by (user, period start, quota, threshold), inserted
with ON CONFLICT DO NOTHING: overlapping runs (two beat schedulers, a retried task) insert it once,
and only the run whose insert took mails. A run that finds several thresholds crossed at once (50%
and 80% since the last run) records each and mails once, about the highest.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload

from webapp import quotas
from webapp.accounts.models import User
from webapp.billing.models import ALERT_THRESHOLDS, LIVE_SUBSCRIPTION_STATUSES, UsageAlert, UserSubscription
from webapp.billing.services import take_sqlite_write_lock
from webapp.db import utcnow
from webapp.extensions import db
from webapp.mail import absolute_url, send_mail


@dataclass(frozen=True)
class Crossing:
    key: str
    threshold: int
    used: int
    limit: int


def crossings(user: User, terms: quotas.Allowance) -> list[Crossing]:
    """Every threshold each metered quota has reached this period, for the metrics the user did not mute."""
    found = []
    keys = [key for key in quotas.METERED_QUOTAS if terms.limit(key) and key not in (user.muted_usage_alerts or [])]
    for key, used in quotas.usage(user.id, keys, terms).items():
        limit = terms.limit(key)
        found += [Crossing(key, threshold, used, limit) for threshold in ALERT_THRESHOLDS
                  if used * 100 >= threshold * limit]
    return found


def record_crossing(user: User, terms: quotas.Allowance, crossing: Crossing) -> bool:
    """Record the crossing; False when it was recorded before (by this run's predecessors or a rival)."""
    insert = postgresql_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(UsageAlert).values(
        user_id=user.id, period_start=terms.period_start, period_end=terms.period_end, quota_key=crossing.key,
        threshold=crossing.threshold, used=crossing.used, quota_limit=crossing.limit,
        created_at=utcnow(), updated_at=utcnow(),
    ).on_conflict_do_nothing(index_elements=["user_id", "period_start", "quota_key", "threshold"])
    return db.session.execute(statement.returning(UsageAlert.id)).first() is not None


def alert_user(user: User, terms: quotas.Allowance) -> list[Crossing]:
    """Record the user's new crossings and mail the highest per quota; the newly recorded ones."""
    new = [crossing for crossing in crossings(user, terms) if record_crossing(user, terms, crossing)]
    # Crossings come in rising thresholds per quota, so the last one of each quota is its highest.
    highest = {crossing.key: crossing for crossing in new}
    for crossing in highest.values():
        _mail(user, terms, crossing)
    return new


def _mail(user: User, terms: quotas.Allowance, crossing: Crossing) -> None:
    label = quotas.QUOTA_LABELS[crossing.key]
    at_limit = terms.at_limit(crossing.key)
    subject = (f"You have used all of your {label.lower()} quota" if crossing.threshold == 100
               else f"You have used {crossing.threshold}% of your {label.lower()} quota")
    send_mail(user.email, subject, "usage_alert", user=user, crossing=crossing, label=label, terms=terms,
              at_limit=at_limit, price=terms.overage_price(crossing.key),
              subscription_link=absolute_url("billing.subscription"),
              settings_link=absolute_url("accounts.account") + "#usage-alerts")


def send_usage_alerts(now: datetime | None = None) -> int:
    """Alert every user with a live subscription about this period's new crossings; how many were recorded."""
    now = now or utcnow()
    take_sqlite_write_lock()
    subscriptions = db.session.scalars(
        select(UserSubscription)
        .options(joinedload(UserSubscription.plan), joinedload(UserSubscription.user))
        .where(UserSubscription.status.in_(LIVE_SUBSCRIPTION_STATUSES),
               UserSubscription.current_period_start <= now, UserSubscription.current_period_end > now)
        .order_by(UserSubscription.id)
    ).all()
    recorded = 0
    for subscription in subscriptions:
        terms = quotas.Allowance(quotas.with_defaults(subscription.plan.quotas), subscription.current_period_start,
                                 subscription.current_period_end)
        recorded += len(alert_user(subscription.user, terms))
    return recorded


BANNER_ORDER = (UsageAlert.quota_key, UsageAlert.threshold.desc())


def undismissed(user: User, now: datetime | None = None) -> Select:
    """The banner's columns of the user's undismissed crossings in the running period (order by BANNER_ORDER)."""
    return select(UsageAlert.quota_key, UsageAlert.threshold, UsageAlert.used, UsageAlert.quota_limit).where(
        UsageAlert.user_id == user.id, UsageAlert.dismissed_at.is_(None), UsageAlert.period_end > (now or utcnow()))


def highest_per_quota(rows: Iterable[Any]) -> list[Any]:
    """The banner's alerts: of crossings in BANNER_ORDER, the highest of each quota."""
    highest: dict[str, Any] = {}
    for row in rows:
        highest.setdefault(row["quota_key"], row)
    return list(highest.values())


def dismiss_alerts(user: User, now: datetime | None = None) -> int:
    """Hide the banner's alerts of the running period; they are not mailed again."""
    now = now or utcnow()
    result = db.session.execute(
        update(UsageAlert)
        .where(UsageAlert.user_id == user.id, UsageAlert.dismissed_at.is_(None), UsageAlert.period_end > now)
        .values(dismissed_at=now, lock_version=UsageAlert.lock_version + 1)
    )
    return result.rowcount
