"""``flask runners create NAME``: a job runner and its token, shown once."""
from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from webapp.extensions import db
from webapp.training.models import JobRunner
from webapp.training.services import create_runner

runners = AppGroup("runners", help="Manage the job runners that report through the JSON API.")


@runners.command("create")
@click.argument("name")
def create_runner_command(name: str) -> None:
    """Create runner NAME and print its token (only its hash is stored)."""
    if db.session.scalar(select(JobRunner.id).where(JobRunner.name == name)):
        raise click.ClickException(f"A runner named {name!r} already exists.")
    _, token = create_runner(name)
    db.session.commit()
    click.echo(f"Runner {name!r} created. Its token, shown only now:")
    click.echo(token)
