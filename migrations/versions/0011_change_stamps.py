"""Indexes on minions.updated_at and users.updated_at: the leaderboard's conditional refresh reads
the latest change of each in one index step; and on minions (created_at, id), the admin list's
default order, which it pages by key.

Revision ID: 0011_change_stamps
Revises: 0010_stripe
Create Date: 2026-12-01
"""
from alembic import op

revision = "0011_change_stamps"
down_revision = "0010_stripe"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_minions_updated_at", "minions", ["updated_at"])
    op.create_index("ix_users_updated_at", "users", ["updated_at"])
    op.create_index("ix_minions_created_at_id", "minions", ["created_at", "id"])


def downgrade():
    op.drop_index("ix_minions_created_at_id", table_name="minions")
    op.drop_index("ix_users_updated_at", table_name="users")
    op.drop_index("ix_minions_updated_at", table_name="minions")
