"""The schema as the migrations build it, on SQLite and PostgreSQL."""
from __future__ import annotations

import warnings
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade

from tests.conftest import make_test_app
from webapp import MIGRATIONS_DIR
from webapp.db import utcnow
from webapp.extensions import db

EXPECTED_TABLES = {
    "users", "roles", "permissions", "user_roles", "role_permissions", "sessions", "tokens",
    "audit_events", "plans", "user_subscriptions", "payments", "usage_records", "providers",
    "user_provider_configs", "models", "model_versions", "datasets", "training_jobs",
    "training_job_datasets", "training_job_events", "training_job_status_counts", "minions", "minion_xp_events",
    "minion_xp_gains",
    "migration_log", "job_runners", "job_runner_reports", "training_workers", "mail_outbox",
    "metering_tokens", "usage_rollups", "usage_alerts",
    "billing_customers", "checkout_sessions", "webhook_events",
}


def test_every_table_exists_with_standard_columns(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        tables = set(inspector.get_table_names()) - {"alembic_version"}
        assert tables == EXPECTED_TABLES
        for table in tables:
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            for name in ("id", "created_at", "updated_at", "lock_version"):
                assert name in columns, f"{table}.{name}"
            assert inspector.get_pk_constraint(table)["constrained_columns"] == ["id"]


def test_every_foreign_key_is_indexed_and_has_on_delete(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        for table in EXPECTED_TABLES:
            leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(table)}
            leading |= {tuple(uq["column_names"][:1]) for uq in inspector.get_unique_constraints(table)}
            for fk in inspector.get_foreign_keys(table):
                column = fk["constrained_columns"][0]
                assert (column,) in leading, f"{table}.{column} has no index"
                assert column.endswith("_id"), f"{table}.{column} is not named *_id"
                on_delete = (fk.get("options") or {}).get("ondelete")
                assert on_delete, f"{table}.{column} has no explicit ON DELETE"


def test_constraint_names_follow_the_convention(app):
    with app.app_context():
        inspector = sa.inspect(db.engine)
        for table in EXPECTED_TABLES:
            for fk in inspector.get_foreign_keys(table):
                assert fk["name"].startswith(f"fk_{table}_"), fk
            for uq in inspector.get_unique_constraints(table):
                if uq["name"]:
                    assert uq["name"].startswith(f"uq_{table}_"), uq


@pytest.mark.postgres_only
def test_json_columns_are_jsonb_on_postgresql(app):
    with app.app_context():
        types = db.session.execute(sa.text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name IN ('changes', 'quotas', 'hyperparameters', 'metrics', 'attributes', 'settings')"
        )).all()
        assert types and all(t.data_type == "jsonb" for t in types), types
        tz = db.session.execute(sa.text(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
            " AND data_type = 'timestamp without time zone'"
        )).scalar()
        assert tz == 0


def insert(table: str, **values):
    columns = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    db.session.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({params})"), values)


def base_rows():
    now = utcnow()
    insert("users", id=1, email="ada@example.test", display_name="Ada", password_hash="x")
    insert("plans", id=1, code="pro", name="Pro", price_cents=100, quotas="{}", features="[]")
    insert("providers", id=1, slug="openai", name="OpenAI", default_base_url="https://api.openai.com/v1", capabilities="[]")
    insert("models", id=1, model_type="external", provider_id=1, model_key="gpt-4o", name="GPT-4o",
           parameters="{}", capabilities="[]", pricing="{}", tags="[]")
    insert("minions", id=1, owner_user_id=1, model_id=1, name="Bob", attributes="{}")
    insert("training_jobs", id=1, user_id=1, base_model_id=1, name="job", hyperparameters="{}",
           metrics="{}", queued_at=now.replace(tzinfo=None) if db.engine.dialect.name == "sqlite" else now)
    return now


def subscription(status: str, id: int):
    now = utcnow()
    stamp = now.replace(tzinfo=None) if db.engine.dialect.name == "sqlite" else now
    insert("user_subscriptions", id=id, user_id=1, plan_id=1, status=status,
           current_period_start=stamp, current_period_end=stamp + timedelta(days=30))


BAD_ROWS = {
    "negative amount": lambda: insert("payments", user_id=1, amount_cents=-5),
    "unknown status": lambda: subscription("sleeping", 10),
    "email differing only in case": lambda: insert("users", email="ADA@example.test", display_name="A", password_hash="x"),
    "second active subscription": lambda: (subscription("active", 10), subscription("trialing", 11)),
    "progress above one": lambda: db.session.execute(sa.text("UPDATE training_jobs SET progress = 1.5 WHERE id = 1")),
    "second XP award for one job": lambda: (
        insert("minion_xp_events", minion_id=1, delta=10, reason="training_job.succeeded", training_job_id=1),
        insert("minion_xp_events", minion_id=1, delta=10, reason="training_job.succeeded", training_job_id=1),
    ),
    "negative xp": lambda: db.session.execute(sa.text("UPDATE minions SET xp = -1 WHERE id = 1")),
    "negative usage quantity": lambda: insert("usage_records", user_id=1, metric="requests", quantity=-1, occurred_at="2026-01-01"),
    "unknown model type": lambda: insert("models", model_type="magic", model_key="m", name="m", parameters="{}", capabilities="[]", pricing="{}", tags="[]"),
    "external job without provider": lambda: db.session.execute(sa.text("UPDATE training_jobs SET job_type = 'external' WHERE id = 1")),
    "dangling foreign key": lambda: insert("minions", owner_user_id=999, model_id=1, name="x", attributes="{}"),
    "unknown token type": lambda: insert("tokens", user_id=1, type="magic", token_hash="h", expires_at="2026-01-01"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_database_rejects_bad_rows(db_session, case):
    base_rows()
    with pytest.raises(sa.exc.IntegrityError):
        with db_session.begin_nested():
            BAD_ROWS[case]()


def test_good_rows_are_accepted(db_session):
    """The rejections above are the constraints, not a broken fixture."""
    base_rows()
    with db_session.begin_nested():
        subscription("active", 10)
        subscription("canceled", 11)
        insert("payments", user_id=1, amount_cents=0)
        insert("minion_xp_events", minion_id=1, delta=10, reason="training_job.succeeded", training_job_id=1)
        db_session.execute(sa.text("UPDATE training_jobs SET progress = 1.0 WHERE id = 1"))


def drift(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        with warnings.catch_warnings():
            # SQLite cannot reflect expression indexes; alembic says so and skips them.
            warnings.simplefilter("ignore")
            return compare_metadata(context, db.metadata)


def test_autogenerate_finds_no_drift(app):
    assert drift(app) == []


def test_downgrade_then_upgrade_round_trips(backend, tmp_path):
    app = make_test_app(backend, tmp_path, suffix="_roundtrip")
    with app.app_context():
        downgrade(revision="base")
        remaining = set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert remaining == set()
        upgrade()
        assert set(sa.inspect(db.engine).get_table_names()) - {"alembic_version"} == EXPECTED_TABLES
        log = db.session.execute(sa.text("SELECT revision, direction FROM migration_log ORDER BY id")).all()
        head = ScriptDirectory(MIGRATIONS_DIR).get_current_head()
        assert [tuple(row) for row in log][-1] == (head, "upgrade")
        db.engine.dispose()
    assert drift(app) == []
