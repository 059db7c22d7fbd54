"""Celery tasks of the billing domain, run by beat."""
from __future__ import annotations

from celery import shared_task

from webapp.billing import alerts
from webapp.billing.services import roll_periods
from webapp.extensions import db


@shared_task(ignore_result=True)
def roll_subscription_periods() -> dict:
    """End, downgrade or renew every subscription whose period has passed (running it twice does nothing more)."""
    summary = roll_periods()
    db.session.commit()
    return vars(summary)


@shared_task(ignore_result=True)
def send_usage_alerts() -> int:
    """Mail each new 50/80/100% crossing of a metered quota (each is recorded once, so running it twice mails once)."""
    recorded = alerts.send_usage_alerts()
    db.session.commit()
    return recorded
