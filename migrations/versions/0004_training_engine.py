"""Training engine: the job's lease (worker, heartbeat, dispatch time) and attempts; a version's provider model id.

Revision ID: 0004_training_engine
Revises: 0003_self_service
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_training_engine"
down_revision = "0003_self_service"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade():
    # Plain ADD COLUMN on both databases: a batch rebuild on SQLite would drop the status-count triggers.
    op.add_column("training_jobs", sa.Column("worker_name", sa.String(length=200), nullable=True))
    op.add_column("training_jobs", sa.Column("heartbeat_at", TIMESTAMP, nullable=True))
    op.add_column("training_jobs", sa.Column("dispatched_at", TIMESTAMP, nullable=True))
    op.add_column("training_jobs", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.add_column("training_jobs", sa.Column("max_attempts", sa.Integer(), server_default="2", nullable=False))
    op.add_column("model_versions", sa.Column("external_model_id", sa.String(length=200), nullable=True))
    op.create_index("ix_training_jobs_status_dispatched_at", "training_jobs", ["status", "dispatched_at"])
    op.create_index("ix_training_jobs_status_heartbeat_at", "training_jobs", ["status", "heartbeat_at"])
    if op.get_bind().dialect.name != "sqlite":
        # SQLite cannot add a constraint to an existing table; the model declares it for new databases' checks.
        op.create_check_constraint("ck_training_jobs_attempts_range", "training_jobs",
                                   "attempts >= 0 AND max_attempts >= 1")


def downgrade():
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("ck_training_jobs_attempts_range", "training_jobs", type_="check")
    op.drop_index("ix_training_jobs_status_heartbeat_at", table_name="training_jobs")
    op.drop_index("ix_training_jobs_status_dispatched_at", table_name="training_jobs")
    for column in ("max_attempts", "attempts", "dispatched_at", "heartbeat_at", "worker_name"):
        op.drop_column("training_jobs", column)
    op.drop_column("model_versions", "external_model_id")
