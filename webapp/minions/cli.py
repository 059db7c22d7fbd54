"""``flask minions verify-xp [--repair]``: check that every minion's xp equals its XP ledger."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli import verify_and_repair
from webapp.minions.services import repair_xp, xp_mismatches

minions = AppGroup("minions", help="Minion maintenance.")


@minions.command("verify-xp")
@click.option("--repair", is_flag=True, help="Set each mismatched xp to the sum of its XP events.")
def verify_xp_command(repair: bool) -> None:
    """List minions whose xp differs from the sum of their XP events; exit 1 if any remain."""
    verify_and_repair(xp_mismatches, lambda m: f"#{m.minion_id} {m.name}: xp {m.xp}, ledger {m.ledger}",
                      "Every minion's xp equals its XP ledger.", "minion(s)", repair, repair_xp)
