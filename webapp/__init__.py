"""Minion Console: the admin and self-service console of the minion platform."""
from __future__ import annotations

import os
from typing import Any

from flask import Flask

from webapp import config as config_module
from webapp.extensions import csrf, db, limiter, login_manager, migrate

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "migrations")
PROJECT_ROOT = os.path.dirname(MIGRATIONS_DIR)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        template_folder=os.path.join(PROJECT_ROOT, "templates"),
        static_folder=os.path.join(PROJECT_ROOT, "static"),
        instance_path=os.environ.get("INSTANCE_PATH") or os.path.join(PROJECT_ROOT, "instance"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(config_module.from_environment(app.instance_path))
    if config:
        app.config.from_mapping(config)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_commands(app)
    return app


def register_extensions(app: Flask) -> None:
    import webapp.models  # noqa: F401  (every table registered before migrations look)
    from webapp import database

    database.init_app(app)
    db.init_app(app)
    database.bind_engine(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, compare_type=True, render_as_batch=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    from webapp import diagnostics, htmx, inputs, navigation, ratelimits, security, times
    from webapp.accounts import access
    from webapp.celery_app import celery_init_app

    inputs.init_app(app)
    ratelimits.init_app(app)
    access.init_app(app)
    security.init_app(app)
    htmx.init_app(app)
    navigation.init_app(app)
    diagnostics.init_app(app)
    celery_init_app(app)
    times.init_app(app)


def register_blueprints(app: Flask) -> None:
    from webapp import accounts, admin, billing, home, minions, providers, signup, support, training
    from webapp.datasets import views as datasets

    for blueprint in (accounts.bp, signup.bp, billing.bp, billing.webhooks_bp, home.bp, providers.bp, support.bp,
                      minions.bp, datasets.bp, training.bp, training.api_bp):
        app.register_blueprint(blueprint)
    admin.init_app(app)


def register_errorhandlers(app: Flask) -> None:
    from webapp import errors

    errors.init_app(app)


def register_commands(app: Flask) -> None:
    from webapp.billing.cli import billing
    from webapp.cli import seed
    from webapp.minions.cli import minions
    from webapp.providers.cli import providers
    from webapp.training.cli import runners

    app.cli.add_command(billing)
    app.cli.add_command(seed)
    app.cli.add_command(minions)
    app.cli.add_command(runners)
    app.cli.add_command(providers)
