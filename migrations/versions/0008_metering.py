"""Metering: usage events keyed by the sender's id, their daily rollup, and the metering API's service tokens.

Revision ID: 0008_metering
Revises: 0007_payment_lines
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_metering"
down_revision = "0007_payment_lines"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)

# The rollup of the records already there: one slice per user, UTC day and metric, cut where the
# user's live period started that day (see UsageRollup). Users without a subscription get whole
# days; the per-day sums, which `flask metering verify` checks, are exact either way.
ROLLUP_BACKFILL = {
    "postgresql": """
        INSERT INTO usage_rollups (user_id, day, starts_at, metric, quantity)
        SELECT user_id, day, starts_at, metric, SUM(quantity) FROM (
            SELECT r.user_id, r.metric, r.quantity,
                   (r.occurred_at AT TIME ZONE 'UTC')::date AS day,
                   CASE WHEN s.current_period_start > date_trunc('day', r.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                             AND r.occurred_at >= s.current_period_start
                        THEN s.current_period_start
                        ELSE date_trunc('day', r.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END AS starts_at
            FROM usage_records r
            LEFT JOIN user_subscriptions s
              ON s.user_id = r.user_id AND s.status IN ('trialing', 'active', 'past_due')
        ) sliced
        GROUP BY user_id, day, starts_at, metric
    """,
    "sqlite": """
        INSERT INTO usage_rollups (user_id, day, starts_at, metric, quantity)
        SELECT user_id, day, starts_at, metric, SUM(quantity) FROM (
            SELECT r.user_id, r.metric, r.quantity, date(r.occurred_at) AS day,
                   CASE WHEN s.current_period_start > date(r.occurred_at) || ' 00:00:00.000000'
                             AND r.occurred_at >= s.current_period_start
                        THEN s.current_period_start
                        ELSE date(r.occurred_at) || ' 00:00:00.000000' END AS starts_at
            FROM usage_records r
            LEFT JOIN user_subscriptions s
              ON s.user_id = r.user_id AND s.status IN ('trialing', 'active', 'past_due')
        ) sliced
        GROUP BY user_id, day, starts_at, metric
    """,
}


def standard_columns():
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
    ]


def upgrade():
    op.add_column("usage_records", sa.Column("event_id", sa.String(length=64), nullable=True))
    op.execute("UPDATE usage_records SET event_id = 'record-' || CAST(id AS VARCHAR(20))")
    with op.batch_alter_table("usage_records") as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint(batch.f("uq_usage_records_event_id"), ["event_id"])

    op.create_table(
        "metering_tokens",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        *standard_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metering_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_metering_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_metering_tokens_token_hash")),
    )
    op.create_table(
        "usage_rollups",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("starts_at", TIMESTAMP, nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), server_default="0", nullable=False),
        *standard_columns(),
        sa.CheckConstraint("metric IN ('input_tokens', 'output_tokens', 'requests', 'training_minutes')",
                           name=op.f("ck_usage_rollups_metric_valid")),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_rollups_quantity_non_negative")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_usage_rollups_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rollups")),
        sa.UniqueConstraint("user_id", "starts_at", "metric", name=op.f("uq_usage_rollups_user_id_starts_at_metric")),
    )
    op.execute(ROLLUP_BACKFILL[op.get_bind().dialect.name])


def downgrade():
    op.drop_table("usage_rollups")
    op.drop_table("metering_tokens")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_constraint("uq_usage_records_event_id", type_="unique")
        batch.drop_column("event_id")
