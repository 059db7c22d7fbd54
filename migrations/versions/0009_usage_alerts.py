"""Usage alerts: each 50/80/100% crossing of a metered quota, once per period, and the metrics a user muted.

Revision ID: 0009_usage_alerts
Revises: 0008_metering
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_usage_alerts"
down_revision = "0008_metering"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("muted_usage_alerts", JSON, server_default="[]", nullable=False))
    op.create_table(
        "usage_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("period_start", TIMESTAMP, nullable=False),
        sa.Column("period_end", TIMESTAMP, nullable=False),
        sa.Column("quota_key", sa.String(length=32), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("quota_limit", sa.BigInteger(), nullable=False),
        sa.Column("dismissed_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint("threshold IN (50, 80, 100)", name=op.f("ck_usage_alerts_threshold_valid")),
        sa.CheckConstraint("used >= 0", name=op.f("ck_usage_alerts_used_non_negative")),
        sa.CheckConstraint("quota_limit >= 0", name=op.f("ck_usage_alerts_quota_limit_non_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_usage_alerts_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_alerts")),
        sa.UniqueConstraint("user_id", "period_start", "quota_key", "threshold",
                            name=op.f("uq_usage_alerts_user_id_period_start_quota_key_threshold")),
    )


def downgrade():
    op.drop_table("usage_alerts")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("muted_usage_alerts")
