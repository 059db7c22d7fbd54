"""Self-service: staff approval of public datasets; deleting a dataset keeps the jobs that used it.

datasets gains approved_at/approved_by_id and an index for the public catalogue.
training_job_datasets.dataset_id becomes nullable with ON DELETE SET NULL, so a
finished job's history survives the deletion of a dataset it trained on.

Revision ID: 0003_self_service
Revises: 0002_hardening_input
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_self_service"
down_revision = "0002_hardening_input"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JOB_DATASET_FK = "fk_training_job_datasets_dataset_id_datasets"


def upgrade():
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("approved_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("approved_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_datasets_approved_by_id_users", "users", ["approved_by_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_datasets_approved_by_id", ["approved_by_id"])
        batch.create_index("ix_datasets_visibility_name", ["visibility", "name"])
    with op.batch_alter_table("training_job_datasets") as batch:
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=True)
        batch.drop_constraint(JOB_DATASET_FK, type_="foreignkey")
        batch.create_foreign_key(JOB_DATASET_FK, "datasets", ["dataset_id"], ["id"], ondelete="SET NULL")


def downgrade():
    # Links to deleted datasets cannot point anywhere again.
    op.execute("DELETE FROM training_job_datasets WHERE dataset_id IS NULL")
    with op.batch_alter_table("training_job_datasets") as batch:
        batch.drop_constraint(JOB_DATASET_FK, type_="foreignkey")
        batch.create_foreign_key(JOB_DATASET_FK, "datasets", ["dataset_id"], ["id"], ondelete="RESTRICT")
        batch.alter_column("dataset_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index("ix_datasets_visibility_name")
        batch.drop_index("ix_datasets_approved_by_id")
        batch.drop_constraint("fk_datasets_approved_by_id_users", type_="foreignkey")
        batch.drop_column("approved_by_id")
        batch.drop_column("approved_at")
