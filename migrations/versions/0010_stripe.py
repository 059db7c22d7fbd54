"""Card payments through Stripe: plans' price ids, Stripe-run subscriptions, invoice links and
refunds on payments, customers, checkout sessions, and the webhook events received.

Revision ID: 0010_stripe
Revises: 0009_usage_alerts
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010_stripe"
down_revision = "0009_usage_alerts"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def timestamps():
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
    ]


def upgrade():
    with op.batch_alter_table("plans") as batch:
        batch.add_column(sa.Column("stripe_price_id", sa.String(length=120), nullable=True))
        batch.create_unique_constraint(batch.f("uq_plans_stripe_price_id"), ["stripe_price_id"])
    with op.batch_alter_table("user_subscriptions") as batch:
        batch.add_column(sa.Column("provider", sa.String(length=32), server_default="manual_invoice",
                                   nullable=False))
        batch.add_column(sa.Column("provider_customer_ref", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("provider_schedule_ref", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("provider_synced_at", TIMESTAMP, nullable=True))
        batch.create_index(batch.f("ix_user_subscriptions_provider_ref"), ["provider_ref"])
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("hosted_invoice_url", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("invoice_pdf_url", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("provider_charge_ref", sa.String(length=120), nullable=True))
        batch.add_column(sa.Column("refunded_cents", sa.Integer(), server_default="0", nullable=False))
        batch.create_check_constraint("refunded_cents_non_negative", "refunded_cents >= 0")
    op.create_table(
        "billing_customers",
        *timestamps(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("customer_ref", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_billing_customers_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_customers")),
        sa.UniqueConstraint("user_id", name=op.f("uq_billing_customers_user_id")),
        sa.UniqueConstraint("provider", "customer_ref", name=op.f("uq_billing_customers_provider_customer_ref")),
    )
    op.create_table(
        "checkout_sessions",
        *timestamps(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("session_ref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'completed')", name=op.f("ck_checkout_sessions_status_valid")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_checkout_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_checkout_sessions_plan_id_plans"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["subscription_id"], ["user_subscriptions.id"],
                                name=op.f("fk_checkout_sessions_subscription_id_user_subscriptions"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sessions")),
        sa.UniqueConstraint("session_ref", name=op.f("uq_checkout_sessions_session_ref")),
    )
    op.create_index(op.f("ix_checkout_sessions_user_id"), "checkout_sessions", ["user_id"])
    op.create_index(op.f("ix_checkout_sessions_plan_id"), "checkout_sessions", ["plan_id"])
    op.create_index(op.f("ix_checkout_sessions_subscription_id"), "checkout_sessions", ["subscription_id"])
    op.create_table(
        "webhook_events",
        *timestamps(),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("event_ref", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", TIMESTAMP, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("outcome", sa.String(length=255), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("provider", "event_ref", name=op.f("uq_webhook_events_provider_event_ref")),
    )
    op.create_index(op.f("ix_webhook_events_event_type"), "webhook_events", ["event_type"])


def downgrade():
    op.drop_index(op.f("ix_webhook_events_event_type"), table_name="webhook_events")
    op.drop_table("webhook_events")
    for column in ("subscription_id", "plan_id", "user_id"):
        op.drop_index(op.f(f"ix_checkout_sessions_{column}"), table_name="checkout_sessions")
    op.drop_table("checkout_sessions")
    op.drop_table("billing_customers")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint("refunded_cents_non_negative", type_="check")
        for column in ("refunded_cents", "provider_charge_ref", "invoice_pdf_url", "hosted_invoice_url"):
            batch.drop_column(column)
    with op.batch_alter_table("user_subscriptions") as batch:
        batch.drop_index(batch.f("ix_user_subscriptions_provider_ref"))
        for column in ("provider_synced_at", "provider_schedule_ref", "provider_customer_ref", "provider"):
            batch.drop_column(column)
    with op.batch_alter_table("plans") as batch:
        batch.drop_constraint(batch.f("uq_plans_stripe_price_id"), type_="unique")
        batch.drop_column("stripe_price_id")
