"""``flask metering create-token NAME`` and ``flask metering verify [--repair]``."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli import create_named_token, verify_and_repair
from webapp.metering.models import MeteringToken
from webapp.metering.services import create_token, repair_rollup, rollup_mismatches

metering = AppGroup("metering", help="The metering API's service tokens, and the usage rollup's check.")


@metering.command("create-token")
@click.argument("name")
def create_token_command(name: str) -> None:
    """Create service token NAME for the metering API and print it (only its hash is stored)."""
    create_named_token(MeteringToken, "metering token", name, create_token)


@metering.command("verify")
@click.option("--repair", is_flag=True, help="Rebuild each mismatched day from the raw usage records.")
def verify_command(repair: bool) -> None:
    """List (user, day, metric) rollups that differ from the sum of their usage records; exit 1 if any remain."""
    verify_and_repair(
        rollup_mismatches,
        lambda m: f"user #{m.user_id} {m.day} {m.metric}: rollup {m.rollup:,}, records {m.raw:,}",
        "Every daily rollup equals the sum of its usage records.", "rollup(s)", repair,
        repair_rollup)
