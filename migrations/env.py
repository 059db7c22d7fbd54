"""Alembic environment: runs inside the Flask app so it uses the app's database."""
import logging
from datetime import datetime, timezone
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from flask import current_app

from webapp.database import unbounded

config = context.config
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


def record_step(ctx, step, heads, run_args):
    """Write each applied step to migration_log so admins can see the schema history."""
    connection = ctx.connection
    if not sa.inspect(connection).has_table("migration_log"):
        return  # the step that drops the table on downgrade
    revision = step.up_revision
    now = datetime.now(timezone.utc)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    connection.execute(
        sa.text(
            "INSERT INTO migration_log (revision, direction, description, applied_at, created_at, updated_at, lock_version)"
            " VALUES (:revision, :direction, :description, :now, :now, :now, 1)"
        ),
        {
            "revision": step.up_revision_id,
            "direction": "upgrade" if step.is_upgrade else "downgrade",
            "description": (revision.doc or "")[:255] if revision is not None else "",
            "now": now,
        },
    )


def skip_empty_autogenerate(context, revision, directives):
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def run_migrations_online():
    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with target_db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_db.metadata,
            on_version_apply=record_step,
            **conf_args,
        )
        # An index build may take longer than a web request's statement timeout.
        with context.begin_transaction(), unbounded(connection):
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run against a database.")
run_migrations_online()
