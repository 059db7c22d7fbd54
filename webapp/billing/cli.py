"""``flask billing ...``: thin commands over webapp.billing.services."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.billing.services import roll_periods
from webapp.extensions import db

billing = AppGroup("billing", help="Subscription housekeeping.")


@billing.command("roll-periods")
def roll_periods_command() -> None:
    """End, downgrade or renew every subscription whose period has passed (safe to run again)."""
    summary = roll_periods()
    db.session.commit()
    click.echo(f"renewed {summary.renewed}, downgraded {summary.downgraded}, ended {summary.ended}")
