"""Each user's time zone, and the mail outbox of the embedded start.

Revision ID: 0006_polish
Revises: 0005_external_jobs
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_polish"
down_revision = "0005_external_jobs"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False))
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("recipient", sa.String(length=255), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    op.create_index(op.f("ix_mail_outbox_recipient"), "mail_outbox", ["recipient"])


def downgrade():
    op.drop_index(op.f("ix_mail_outbox_recipient"), table_name="mail_outbox")
    op.drop_table("mail_outbox")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("time_zone")
