"""A payment's lines: what its amount is made of (a renewal with overage).

Revision ID: 0007_payment_lines
Revises: 0006_polish
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_payment_lines"
down_revision = "0006_polish"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade():
    op.add_column("payments", sa.Column("lines", JSON, server_default="[]", nullable=False))


def downgrade():
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("lines")
