"""``flask metering create-token NAME`` and ``flask metering verify [--repair]``."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from webapp.extensions import db
from webapp.metering.models import MeteringToken
from webapp.metering.services import create_token, repair_rollup, rollup_mismatches

metering = AppGroup("metering", help="The metering API's service tokens, and the usage rollup's check.")


@metering.command("create-token")
@click.argument("name")
def create_token_command(name: str) -> None:
    """Create service token NAME for the metering API and print it (only its hash is stored)."""
    if db.session.scalar(select(MeteringToken.id).where(MeteringToken.name == name)):
        raise click.ClickException(f"A metering token named {name!r} already exists.")
    _, token = create_token(name)
    db.session.commit()
    click.echo(f"Metering token {name!r} created. Its value, shown only now:")
    click.echo(token)


@metering.command("verify")
@click.option("--repair", is_flag=True, help="Rebuild each mismatched day from the raw usage records.")
def verify_command(repair: bool) -> None:
    """List (user, day, metric) rollups that differ from the sum of their usage records; exit 1 if any remain."""
    mismatches = rollup_mismatches()
    for mismatch in mismatches:
        click.echo(f"user #{mismatch.user_id} {mismatch.day} {mismatch.metric}: "
                   f"rollup {mismatch.rollup:,}, records {mismatch.raw:,}")
    if not mismatches:
        click.echo("Every daily rollup equals the sum of its usage records.")
        return
    if not repair:
        raise click.ClickException(f"{len(mismatches)} rollup(s) out of step with the records; rerun with --repair.")
    repair_rollup(mismatches)
    db.session.commit()
    click.echo(f"Repaired {len(mismatches)} rollup(s).")
