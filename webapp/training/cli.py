"""``flask runners create NAME``: a job runner and its token, shown once."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from webapp.cli import create_named_token
from webapp.training.models import JobRunner
from webapp.training.services import create_runner

runners = AppGroup("runners", help="Manage the job runners that report through the JSON API.")


@runners.command("create")
@click.argument("name")
def create_runner_command(name: str) -> None:
    """Create runner NAME and print its token (only its hash is stored)."""
    create_named_token(JobRunner, "runner", name, create_runner)
