"""Runner report idempotency keys: job_runner_reports.

Revision ID: 0002_hardening_input
Revises: 0001_initial
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_hardening_input"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    op.create_table(
        "job_runner_reports",
        sa.Column("runner_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=False),
        sa.Column("training_job_id", sa.Integer(), nullable=False),
        sa.Column("response", JSON, nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["runner_id"], ["job_runners.id"], name=op.f("fk_job_runner_reports_runner_id_job_runners"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["training_job_id"], ["training_jobs.id"],
                                name=op.f("fk_job_runner_reports_training_job_id_training_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runner_reports")),
        sa.UniqueConstraint("runner_id", "report_id", name=op.f("uq_job_runner_reports_runner_id_report_id")),
    )
    op.create_index(op.f("ix_job_runner_reports_training_job_id"), "job_runner_reports", ["training_job_id"])


def downgrade():
    op.drop_table("job_runner_reports")
