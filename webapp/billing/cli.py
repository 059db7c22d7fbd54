"""``flask billing ...``: thin commands over webapp.billing.services."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.billing.alerts import send_usage_alerts
from webapp.billing.services import roll_periods
from webapp.extensions import db

billing = AppGroup("billing", help="Subscription housekeeping.")


@billing.command("roll-periods")
def roll_periods_command() -> None:
    """End, downgrade or renew every subscription whose period has passed (safe to run again)."""
    summary = roll_periods()
    db.session.commit()
    click.echo(f"renewed {summary.renewed}, downgraded {summary.downgraded}, ended {summary.ended}")


@billing.command("send-usage-alerts")
def send_usage_alerts_command() -> None:
    """Mail every new 50/80/100% crossing of a metered quota this period (each crossing is mailed once)."""
    recorded = send_usage_alerts()
    db.session.commit()
    click.echo(f"recorded {recorded} new crossings")
