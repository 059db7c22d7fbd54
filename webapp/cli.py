"""``flask seed ...``: thin commands over webapp.seed; and what the domains' commands share."""
from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select, text

from webapp.extensions import db
from webapp.seed import SeedError


def create_named_token(model: Any, what: str, name: str, create: Callable[[str], tuple[Any, str]]) -> None:
    """Create ``what`` NAME through ``create`` and print its token, shown only now (only its hash is stored)."""
    if db.session.scalar(select(model.id).where(model.name == name)):
        raise click.ClickException(f"A {what} named {name!r} already exists.")
    _, token = create(name)
    db.session.commit()
    click.echo(f"{what.capitalize()} {name!r} created. Its token, shown only now:")
    click.echo(token)


def verify_and_repair(find: Callable[[], Sequence[Any]], describe: Callable[[Any], str], all_good: str, what: str,
                      repair: bool, mend: Callable[[Sequence[Any]], None]) -> None:
    """List each mismatch ``find`` reads; mend them with --repair, else exit 1 while any remain.

    ``find`` reads whole tables (10M usage records take seconds), so it runs without the statement
    timeout that keeps web requests short: an operator started it and waits for it.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL statement_timeout = 0"))  # until this transaction ends
    mismatches = find()
    for mismatch in mismatches:
        click.echo(describe(mismatch))
    if not mismatches:
        click.echo(all_good)
        return
    if not repair:
        raise click.ClickException(f"{len(mismatches)} {what} out of step; rerun with --repair.")
    mend(mismatches)
    db.session.commit()
    click.echo(f"Repaired {len(mismatches)} {what}.")

seed = AppGroup("seed", help="Fill the database with demo or benchmark data.")


@seed.command("demo")
@click.option("--password", help="Password of the demo accounts created now [default: DEMO_PASSWORD, else random].")
def seed_demo_command(password: str | None) -> None:
    """Create the demo data set; running it again adds nothing."""
    from webapp.accounts.passwords import password_problem
    from webapp.seed.demo import seed_demo

    generated = not (password or current_app.config.get("DEMO_PASSWORD"))
    password = password or current_app.config.get("DEMO_PASSWORD") or secrets.token_urlsafe(12)
    problem = password_problem(password)
    if problem:
        raise click.BadParameter(problem, param_hint="--password")
    created = seed_demo(password)
    for table, count in created.items():
        if count:
            click.echo(f"{table:>24}  +{count}")
    if not any(created.values()):
        click.echo("Demo data already complete; nothing created.")
    elif created["users"] and generated:
        click.echo(f"Demo accounts (admin@demo.test, ada@demo.test, ...) have the password: {password}")


@seed.command("scale")
@click.option("--users", default=100_000, show_default=True, type=click.IntRange(min=0))
@click.option("--usage", default=1_000_000, show_default=True, type=click.IntRange(min=0), help="Usage records.")
@click.option("--minions", default=100_000, show_default=True, type=click.IntRange(min=0))
@click.option("--jobs", default=50_000, show_default=True, type=click.IntRange(min=0), help="Training jobs.")
@click.option("--events", default=200_000, show_default=True, type=click.IntRange(min=0), help="Training job events.")
@click.option("--batch", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Rows per insert batch and progress step.")
def seed_scale_command(users: int, usage: int, minions: int, jobs: int, events: int, batch: int) -> None:
    """Bulk-load benchmark data on top of the demo data (run `flask seed demo` first).

    Scale users sign in with DEMO_PASSWORD when it is set; otherwise nobody knows their password.
    """
    from webapp.seed.scale import planned_rows, seed_scale

    sizes = {"users": users, "usage": usage, "minions": minions, "jobs": jobs, "events": events}
    with click.progressbar(length=sum(planned_rows(**sizes).values()), label="Loading") as bar:
        try:
            summary = seed_scale(
                **sizes, batch=batch, password=current_app.config.get("DEMO_PASSWORD"), progress=bar.update
            )
        except SeedError as error:
            raise click.ClickException(str(error)) from error
    for table, count in summary["rows"].items():
        click.echo(f"{table:>24}  {count:>10,}")
    click.echo(
        f"{summary['total_rows']:,} rows in {summary['seconds']:.1f} s: "
        f"{summary['rows_per_second']:,.0f} rows/s"
    )
