"""Celery tasks of the billing domain, run by beat."""
from __future__ import annotations

from celery import shared_task

from webapp.billing.services import roll_periods
from webapp.extensions import db


@shared_task(ignore_result=True)
def roll_subscription_periods() -> dict:
    """End, downgrade or renew every subscription whose period has passed (running it twice does nothing more)."""
    summary = roll_periods()
    db.session.commit()
    return vars(summary)
