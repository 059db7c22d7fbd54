"""External jobs and the workers page: the mirrored provider events' cursor, and the worker registry.

Revision ID: 0005_external_jobs
Revises: 0004_training_engine
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_external_jobs"
down_revision = "0004_training_engine"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    # Plain ADD COLUMN on both databases: a batch rebuild on SQLite would drop the status-count triggers.
    op.add_column("training_jobs", sa.Column("external_events_cursor", sa.String(length=120), nullable=True))
    op.create_table(
        "training_workers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("stopped_at", TIMESTAMP, nullable=True),
        sa.Column("processed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
        sa.CheckConstraint("processed >= 0", name=op.f("ck_training_workers_processed_non_negative")),
        sa.CheckConstraint("failed >= 0", name=op.f("ck_training_workers_failed_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_training_workers_name")),
    )
    op.create_index("ix_training_workers_heartbeat_at", "training_workers", ["heartbeat_at"])


def downgrade():
    op.drop_index("ix_training_workers_heartbeat_at", table_name="training_workers")
    op.drop_table("training_workers")
    op.drop_column("training_jobs", "external_events_cursor")
