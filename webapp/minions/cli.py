"""``flask minions verify-xp [--repair]``: check that every minion's xp equals its XP ledger."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.extensions import db
from webapp.minions.services import repair_xp, xp_mismatches

minions = AppGroup("minions", help="Minion maintenance.")


@minions.command("verify-xp")
@click.option("--repair", is_flag=True, help="Set each mismatched xp to the sum of its XP events.")
def verify_xp_command(repair: bool) -> None:
    """List minions whose xp differs from the sum of their XP events; exit 1 if any remain."""
    mismatches = xp_mismatches()
    for mismatch in mismatches:
        click.echo(f"#{mismatch.minion_id} {mismatch.name}: xp {mismatch.xp}, ledger {mismatch.ledger}")
    if not mismatches:
        click.echo("Every minion's xp equals its XP ledger.")
        return
    if not repair:
        raise click.ClickException(f"{len(mismatches)} minion(s) out of step with the ledger; rerun with --repair.")
    repair_xp(mismatches)
    db.session.commit()
    click.echo(f"Repaired {len(mismatches)} minion(s).")
