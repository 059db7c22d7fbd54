"""Initial schema: accounts, billing, providers and models, training, minions, system.

Reviewed by hand from autogenerate output. Portable defaults (now(), true/false)
so one script builds the same schema on SQLite and PostgreSQL; constraint names
come from the naming convention in webapp/db.py. No application imports: this
file describes the schema as it was at this revision.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# users <-> user_subscriptions and model_versions <-> training_jobs refer to each
# other. SQLite accepts a reference to a table that does not exist yet and cannot
# add a constraint later, so it gets the key inline; PostgreSQL gets it at the end.
DEFERRED_FOREIGN_KEYS = [
    ("fk_users_current_subscription_id_user_subscriptions", "users", "current_subscription_id", "user_subscriptions"),
    ("fk_model_versions_training_job_id_training_jobs", "model_versions", "training_job_id", "training_jobs"),
]


TRIGRAM_SEARCH_COLUMNS = [
    ("payments", "provider_ref"), ("payments", "description"),
    ("training_jobs", "name"), ("training_jobs", "external_job_id"),
]


def is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def standard_columns():
    """id, timestamps and the optimistic-lock counter that every table carries."""
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("lock_version", sa.Integer(), server_default="1", nullable=False),
    ]


def deferred_foreign_key(column, target):
    if not is_sqlite():
        return []
    name = next(n for n, _, c, t in DEFERRED_FOREIGN_KEYS if c == column and t == target)
    return [sa.ForeignKeyConstraint([column], [f"{target}.id"], name=name, ondelete="SET NULL")]


def upgrade():
    op.create_table('job_runners',
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('is_active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('last_seen_at', TIMESTAMP, nullable=True),
        *standard_columns(),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runners')),
        sa.UniqueConstraint('name', name=op.f('uq_job_runners_name')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_job_runners_token_hash'))
    )
    op.create_table('migration_log',
        sa.Column('revision', sa.String(length=64), nullable=False),
        sa.Column('direction', sa.String(length=16), nullable=False),
        sa.Column('description', sa.String(length=255), server_default='', nullable=False),
        sa.Column('applied_at', TIMESTAMP, nullable=False),
        *standard_columns(),
        sa.CheckConstraint("direction IN ('upgrade', 'downgrade')", name=op.f('ck_migration_log_direction_valid')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_migration_log'))
    )
    op.create_table('permissions',
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('description', sa.String(length=255), server_default='', nullable=False),
        *standard_columns(),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_permissions')),
        sa.UniqueConstraint('code', name=op.f('uq_permissions_code'))
    )
    op.create_table('plans',
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('description', sa.String(length=500), server_default='', nullable=False),
        sa.Column('price_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
        sa.Column('billing_interval', sa.String(length=8), server_default='month', nullable=False),
        sa.Column('quotas', JSON, nullable=False),
        sa.Column('features', JSON, nullable=False),
        sa.Column('is_public', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('sort_order', sa.Integer(), server_default='0', nullable=False),
        *standard_columns(),
        sa.CheckConstraint("billing_interval IN ('month', 'year')", name=op.f('ck_plans_billing_interval_valid')),
        sa.CheckConstraint("currency IN ('USD', 'EUR', 'GBP')", name=op.f('ck_plans_currency_valid')),
        sa.CheckConstraint('price_cents >= 0', name=op.f('ck_plans_price_cents_non_negative')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_plans')),
        sa.UniqueConstraint('code', name=op.f('uq_plans_code'))
    )
    op.create_table('providers',
        sa.Column('slug', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('api_style', sa.String(length=16), server_default='openai', nullable=False),
        sa.Column('default_base_url', sa.String(length=500), nullable=False),
        sa.Column('capabilities', JSON, nullable=False),
        sa.Column('docs_url', sa.String(length=500), nullable=True),
        sa.Column('is_enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
        *standard_columns(),
        sa.CheckConstraint("api_style IN ('openai', 'anthropic', 'google', 'custom')", name=op.f('ck_providers_api_style_valid')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_providers')),
        sa.UniqueConstraint('slug', name=op.f('uq_providers_slug'))
    )
    op.create_table('roles',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('description', sa.String(length=255), server_default='', nullable=False),
        *standard_columns(),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_roles')),
        sa.UniqueConstraint('name', name=op.f('uq_roles_name'))
    )
    op.create_table('users',
        sa.Column('email', sa.String(length=255), nullable=False),
        sa.Column('display_name', sa.String(length=120), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('is_active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('email_verified_at', TIMESTAMP, nullable=True),
        sa.Column('failed_login_count', sa.Integer(), server_default='0', nullable=False),
        sa.Column('locked_until', TIMESTAMP, nullable=True),
        sa.Column('last_login_at', TIMESTAMP, nullable=True),
        sa.Column('avatar_url', sa.String(length=500), nullable=True),
        sa.Column('current_subscription_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.CheckConstraint('failed_login_count >= 0', name=op.f('ck_users_failed_login_count_non_negative')),
        *deferred_foreign_key('current_subscription_id', 'user_subscriptions'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    op.create_index(op.f('ix_users_current_subscription_id'), 'users', ['current_subscription_id'])
    op.create_index('ix_users_created_at_id', 'users', ['created_at', 'id'])
    if not is_sqlite():
        # Trigram indexes serve the admin's case-insensitive substring search on PostgreSQL.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for column in ("email", "display_name"):
            op.create_index(f"ix_users_{column}_trgm", "users", [sa.text(f"lower({column}) gin_trgm_ops")],
                            postgresql_using="gin")

    op.create_table('audit_events',
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('object_type', sa.String(length=64), nullable=False),
        sa.Column('object_id', sa.Integer(), nullable=True),
        sa.Column('changes', JSON, nullable=False),
        sa.Column('ip_address', sa.String(length=45), nullable=True),
        *standard_columns(),
        sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index(op.f('ix_audit_events_action'), 'audit_events', ['action'])
    op.create_index(op.f('ix_audit_events_actor_id'), 'audit_events', ['actor_id'])
    op.create_index('ix_audit_events_created_at', 'audit_events', ['created_at'])
    op.create_index('ix_audit_events_object_type_object_id', 'audit_events', ['object_type', 'object_id'])

    op.create_table('datasets',
        sa.Column('owner_user_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('slug', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), server_default='', nullable=False),
        sa.Column('visibility', sa.String(length=8), server_default='private', nullable=False),
        sa.Column('format', sa.String(length=32), server_default='jsonl', nullable=False),
        sa.Column('uri', sa.String(length=500), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=True),
        sa.Column('row_count', sa.BigInteger(), nullable=True),
        sa.Column('checksum', sa.String(length=128), nullable=True),
        sa.Column('tags', JSON, nullable=False),
        *standard_columns(),
        sa.CheckConstraint("visibility IN ('public', 'private')", name=op.f('ck_datasets_visibility_valid')),
        sa.CheckConstraint('row_count >= 0', name=op.f('ck_datasets_row_count_non_negative')),
        sa.CheckConstraint('size_bytes >= 0', name=op.f('ck_datasets_size_bytes_non_negative')),
        sa.ForeignKeyConstraint(['owner_user_id'], ['users.id'], name=op.f('fk_datasets_owner_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
        sa.UniqueConstraint('owner_user_id', 'slug', name=op.f('uq_datasets_owner_user_id_slug'))
    )
    op.create_index(op.f('ix_datasets_owner_user_id'), 'datasets', ['owner_user_id'])
    op.create_index('uq_datasets_platform_slug', 'datasets', ['slug'], unique=True, sqlite_where=sa.text('owner_user_id IS NULL'), postgresql_where=sa.text('owner_user_id IS NULL'))

    op.create_table('models',
        sa.Column('model_type', sa.String(length=16), nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=True),
        sa.Column('owner_user_id', sa.Integer(), nullable=True),
        sa.Column('model_key', sa.String(length=120), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('description', sa.String(length=1000), server_default='', nullable=False),
        sa.Column('parameters', JSON, nullable=False),
        sa.Column('capabilities', JSON, nullable=False),
        sa.Column('context_window', sa.Integer(), nullable=True),
        sa.Column('pricing', JSON, nullable=False),
        sa.Column('avatar_url', sa.String(length=500), nullable=True),
        sa.Column('tags', JSON, nullable=False),
        sa.Column('is_active', sa.Boolean(), server_default=sa.true(), nullable=False),
        *standard_columns(),
        sa.CheckConstraint("model_type != 'custom' OR owner_user_id IS NOT NULL", name=op.f('ck_models_custom_has_owner')),
        sa.CheckConstraint("model_type IN ('external', 'reference', 'custom')", name=op.f('ck_models_model_type_valid')),
        sa.CheckConstraint('context_window IS NULL OR context_window > 0', name=op.f('ck_models_context_window_positive')),
        sa.ForeignKeyConstraint(['owner_user_id'], ['users.id'], name=op.f('fk_models_owner_user_id_users'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_models_provider_id_providers'), ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
        sa.UniqueConstraint('provider_id', 'model_key', name=op.f('uq_models_provider_id_model_key'))
    )
    op.create_index(op.f('ix_models_owner_user_id'), 'models', ['owner_user_id'])
    op.create_index(op.f('ix_models_provider_id'), 'models', ['provider_id'])

    op.create_table('role_permissions',
        sa.Column('role_id', sa.Integer(), nullable=False),
        sa.Column('permission_id', sa.Integer(), nullable=False),
        *standard_columns(),
        sa.ForeignKeyConstraint(['permission_id'], ['permissions.id'], name=op.f('fk_role_permissions_permission_id_permissions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_role_permissions_role_id_roles'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_role_permissions')),
        sa.UniqueConstraint('role_id', 'permission_id', name=op.f('uq_role_permissions_role_id_permission_id'))
    )
    op.create_index(op.f('ix_role_permissions_permission_id'), 'role_permissions', ['permission_id'])
    op.create_index(op.f('ix_role_permissions_role_id'), 'role_permissions', ['role_id'])

    op.create_table('sessions',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('session_token_hash', sa.String(length=64), nullable=False),
        sa.Column('refresh_token_hash', sa.String(length=64), nullable=True),
        sa.Column('is_active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('ip_address', sa.String(length=45), nullable=True),
        sa.Column('user_agent', sa.String(length=500), nullable=True),
        sa.Column('last_seen_at', TIMESTAMP, nullable=False),
        sa.Column('expires_at', TIMESTAMP, nullable=False),
        sa.Column('revoked_at', TIMESTAMP, nullable=True),
        sa.Column('revoked_by_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.ForeignKeyConstraint(['revoked_by_id'], ['users.id'], name=op.f('fk_sessions_revoked_by_id_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sessions_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
        sa.UniqueConstraint('refresh_token_hash', name=op.f('uq_sessions_refresh_token_hash')),
        sa.UniqueConstraint('session_token_hash', name=op.f('uq_sessions_session_token_hash'))
    )
    op.create_index(op.f('ix_sessions_revoked_by_id'), 'sessions', ['revoked_by_id'])
    op.create_index(op.f('ix_sessions_user_id'), 'sessions', ['user_id'])
    op.create_index('ix_sessions_user_id_is_active', 'sessions', ['user_id', 'is_active'])

    op.create_table('tokens',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=32), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', TIMESTAMP, nullable=False),
        sa.Column('used_at', TIMESTAMP, nullable=True),
        sa.Column('issued_by_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.CheckConstraint("type IN ('email_verification', 'password_reset')", name=op.f('ck_tokens_type_valid')),
        sa.ForeignKeyConstraint(['issued_by_id'], ['users.id'], name=op.f('fk_tokens_issued_by_id_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_tokens_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_tokens_token_hash'))
    )
    op.create_index(op.f('ix_tokens_issued_by_id'), 'tokens', ['issued_by_id'])
    op.create_index(op.f('ix_tokens_user_id'), 'tokens', ['user_id'])

    op.create_table('user_provider_configs',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=False),
        sa.Column('api_key_ciphertext', sa.LargeBinary(), nullable=True),
        sa.Column('api_key_last4', sa.String(length=4), nullable=True),
        sa.Column('base_url', sa.String(length=500), nullable=True),
        sa.Column('settings', JSON, nullable=False),
        sa.Column('is_enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('last_verified_at', TIMESTAMP, nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        *standard_columns(),
        sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_user_provider_configs_provider_id_providers'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_provider_configs_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_provider_configs')),
        sa.UniqueConstraint('user_id', 'provider_id', name=op.f('uq_user_provider_configs_user_id_provider_id'))
    )
    op.create_index(op.f('ix_user_provider_configs_provider_id'), 'user_provider_configs', ['provider_id'])
    op.create_index(op.f('ix_user_provider_configs_user_id'), 'user_provider_configs', ['user_id'])

    op.create_table('user_roles',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role_id', sa.Integer(), nullable=False),
        *standard_columns(),
        sa.ForeignKeyConstraint(['role_id'], ['roles.id'], name=op.f('fk_user_roles_role_id_roles'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_roles')),
        sa.UniqueConstraint('user_id', 'role_id', name=op.f('uq_user_roles_user_id_role_id'))
    )
    op.create_index(op.f('ix_user_roles_role_id'), 'user_roles', ['role_id'])
    op.create_index(op.f('ix_user_roles_user_id'), 'user_roles', ['user_id'])

    op.create_table('user_subscriptions',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('plan_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('current_period_start', TIMESTAMP, nullable=False),
        sa.Column('current_period_end', TIMESTAMP, nullable=False),
        sa.Column('cancel_at_period_end', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('canceled_at', TIMESTAMP, nullable=True),
        sa.Column('pending_plan_id', sa.Integer(), nullable=True),
        sa.Column('provider_ref', sa.String(length=120), nullable=True),
        *standard_columns(),
        sa.CheckConstraint("status IN ('trialing', 'active', 'past_due', 'canceled', 'expired')", name=op.f('ck_user_subscriptions_status_valid')),
        sa.ForeignKeyConstraint(['pending_plan_id'], ['plans.id'], name=op.f('fk_user_subscriptions_pending_plan_id_plans'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_user_subscriptions_plan_id_plans'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_subscriptions_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_user_subscriptions'))
    )
    op.create_index(op.f('ix_user_subscriptions_pending_plan_id'), 'user_subscriptions', ['pending_plan_id'])
    op.create_index(op.f('ix_user_subscriptions_plan_id'), 'user_subscriptions', ['plan_id'])
    op.create_index(op.f('ix_user_subscriptions_user_id'), 'user_subscriptions', ['user_id'])
    op.create_index('uq_user_subscriptions_one_live_per_user', 'user_subscriptions', ['user_id'], unique=True, sqlite_where=sa.text("status IN ('trialing', 'active', 'past_due')"), postgresql_where=sa.text("status IN ('trialing', 'active', 'past_due')"))

    op.create_table('model_versions',
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.String(length=32), nullable=False),
        sa.Column('parent_version_id', sa.Integer(), nullable=True),
        sa.Column('training_job_id', sa.Integer(), nullable=True),
        sa.Column('stage', sa.String(length=16), server_default='none', nullable=False),
        sa.Column('artifact_uri', sa.String(length=500), nullable=True),
        sa.Column('metrics', JSON, nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.CheckConstraint("stage IN ('none', 'staging', 'production', 'archived')", name=op.f('ck_model_versions_stage_valid')),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_model_versions_created_by_id_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_model_versions_model_id_models'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['parent_version_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_version_id_model_versions'), ondelete='SET NULL'),
        *deferred_foreign_key('training_job_id', 'training_jobs'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
        sa.UniqueConstraint('model_id', 'version', name=op.f('uq_model_versions_model_id_version'))
    )
    op.create_index(op.f('ix_model_versions_created_by_id'), 'model_versions', ['created_by_id'])
    op.create_index(op.f('ix_model_versions_model_id'), 'model_versions', ['model_id'])
    op.create_index(op.f('ix_model_versions_parent_version_id'), 'model_versions', ['parent_version_id'])
    op.create_index(op.f('ix_model_versions_training_job_id'), 'model_versions', ['training_job_id'])

    op.create_table('payments',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=True),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False),
        sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
        sa.Column('description', sa.String(length=255), server_default='', nullable=False),
        sa.Column('provider', sa.String(length=32), server_default='manual_invoice', nullable=False),
        sa.Column('provider_ref', sa.String(length=120), nullable=True),
        sa.Column('idempotency_key', sa.String(length=120), nullable=True),
        sa.Column('paid_at', TIMESTAMP, nullable=True),
        sa.Column('failure_reason', sa.String(length=500), nullable=True),
        *standard_columns(),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'refunded')", name=op.f('ck_payments_status_valid')),
        sa.CheckConstraint('amount_cents >= 0', name=op.f('ck_payments_amount_cents_non_negative')),
        sa.ForeignKeyConstraint(['subscription_id'], ['user_subscriptions.id'], name=op.f('fk_payments_subscription_id_user_subscriptions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_payments_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
        sa.UniqueConstraint('idempotency_key', name=op.f('uq_payments_idempotency_key')),
        sa.UniqueConstraint('provider_ref', name=op.f('uq_payments_provider_ref'))
    )
    op.create_index('ix_payments_status_created_at', 'payments', ['status', 'created_at'])
    op.create_index('ix_payments_created_at_id', 'payments', ['created_at', 'id'])
    op.create_index(op.f('ix_payments_subscription_id'), 'payments', ['subscription_id'])
    op.create_index(op.f('ix_payments_user_id'), 'payments', ['user_id'])
    op.create_index('ix_payments_user_id_created_at', 'payments', ['user_id', 'created_at'])

    op.create_table('usage_records',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=True),
        sa.Column('model_id', sa.Integer(), nullable=True),
        sa.Column('metric', sa.String(length=32), nullable=False),
        sa.Column('quantity', sa.BigInteger(), nullable=False),
        sa.Column('occurred_at', TIMESTAMP, nullable=False),
        *standard_columns(),
        sa.CheckConstraint("metric IN ('input_tokens', 'output_tokens', 'requests', 'training_minutes')", name=op.f('ck_usage_records_metric_valid')),
        sa.CheckConstraint('quantity >= 0', name=op.f('ck_usage_records_quantity_non_negative')),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_usage_records_model_id_models'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['subscription_id'], ['user_subscriptions.id'], name=op.f('fk_usage_records_subscription_id_user_subscriptions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_usage_records_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_records'))
    )
    op.create_index(op.f('ix_usage_records_model_id'), 'usage_records', ['model_id'])
    op.create_index('ix_usage_records_occurred_at_id', 'usage_records', ['occurred_at', 'id'])
    op.create_index(op.f('ix_usage_records_subscription_id'), 'usage_records', ['subscription_id'])
    op.create_index('ix_usage_records_user_id_occurred_at', 'usage_records', ['user_id', 'occurred_at'])

    op.create_table('minions',
        sa.Column('owner_user_id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('model_version_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('avatar_url', sa.String(length=500), nullable=True),
        sa.Column('xp', sa.Integer(), server_default='0', nullable=False),
        sa.Column('level', sa.Integer(), server_default='1', nullable=False),
        sa.Column('status', sa.String(length=16), server_default='idle', nullable=False),
        sa.Column('attributes', JSON, nullable=False),
        *standard_columns(),
        sa.CheckConstraint("status IN ('idle', 'training', 'active', 'retired')", name=op.f('ck_minions_status_valid')),
        sa.CheckConstraint('level >= 0', name=op.f('ck_minions_level_non_negative')),
        sa.CheckConstraint('xp >= 0', name=op.f('ck_minions_xp_non_negative')),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_minions_model_id_models'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_minions_model_version_id_model_versions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['owner_user_id'], ['users.id'], name=op.f('fk_minions_owner_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_minions'))
    )
    op.create_index(op.f('ix_minions_model_id'), 'minions', ['model_id'])
    op.create_index(op.f('ix_minions_model_version_id'), 'minions', ['model_version_id'])
    op.create_index(op.f('ix_minions_owner_user_id'), 'minions', ['owner_user_id'])

    op.create_table('training_jobs',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('minion_id', sa.Integer(), nullable=True),
        sa.Column('base_model_id', sa.Integer(), nullable=False),
        sa.Column('output_model_version_id', sa.Integer(), nullable=True),
        sa.Column('job_type', sa.String(length=16), server_default='internal', nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=True),
        sa.Column('external_job_id', sa.String(length=120), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('progress', sa.Float(), server_default='0', nullable=False),
        sa.Column('hyperparameters', JSON, nullable=False),
        sa.Column('metrics', JSON, nullable=False),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('queued_at', TIMESTAMP, nullable=False),
        sa.Column('started_at', TIMESTAMP, nullable=True),
        sa.Column('finished_at', TIMESTAMP, nullable=True),
        sa.Column('retry_of_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.CheckConstraint("job_type != 'external' OR provider_id IS NOT NULL", name=op.f('ck_training_jobs_external_has_provider')),
        sa.CheckConstraint("job_type IN ('internal', 'external')", name=op.f('ck_training_jobs_job_type_valid')),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')", name=op.f('ck_training_jobs_status_valid')),
        sa.CheckConstraint('progress >= 0 AND progress <= 1', name=op.f('ck_training_jobs_progress_range')),
        sa.ForeignKeyConstraint(['base_model_id'], ['models.id'], name=op.f('fk_training_jobs_base_model_id_models'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['minion_id'], ['minions.id'], name=op.f('fk_training_jobs_minion_id_minions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['output_model_version_id'], ['model_versions.id'], name=op.f('fk_training_jobs_output_model_version_id_model_versions'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['provider_id'], ['providers.id'], name=op.f('fk_training_jobs_provider_id_providers'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['retry_of_id'], ['training_jobs.id'], name=op.f('fk_training_jobs_retry_of_id_training_jobs'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_training_jobs_user_id_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_jobs'))
    )
    op.create_index(op.f('ix_training_jobs_base_model_id'), 'training_jobs', ['base_model_id'])
    op.create_index(op.f('ix_training_jobs_minion_id'), 'training_jobs', ['minion_id'])
    op.create_index(op.f('ix_training_jobs_output_model_version_id'), 'training_jobs', ['output_model_version_id'])
    op.create_index(op.f('ix_training_jobs_provider_id'), 'training_jobs', ['provider_id'])
    op.create_index(op.f('ix_training_jobs_retry_of_id'), 'training_jobs', ['retry_of_id'])
    op.create_index('ix_training_jobs_status_created_at', 'training_jobs', ['status', 'created_at'])
    op.create_index('ix_training_jobs_user_id_created_at', 'training_jobs', ['user_id', 'created_at'])
    op.create_index('ix_training_jobs_queued_at_id', 'training_jobs', ['queued_at', 'id'])
    op.create_index('ix_training_jobs_created_at_id', 'training_jobs', ['created_at', 'id'])
    op.create_index('ix_training_jobs_finished_at', 'training_jobs', ['finished_at'])

    op.create_table('training_job_status_counts',
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('count', sa.Integer(), server_default='0', nullable=False),
        *standard_columns(),
        sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')", name=op.f('ck_training_job_status_counts_status_valid')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_job_status_counts')),
        sa.UniqueConstraint('status', name=op.f('uq_training_job_status_counts_status'))
    )
    op.bulk_insert(
        sa.table('training_job_status_counts', sa.column('status', sa.String), sa.column('count', sa.Integer)),
        [{'status': status, 'count': 0} for status in JOB_STATUSES],
    )
    create_job_count_triggers()

    op.create_table('minion_xp_events',
        sa.Column('minion_id', sa.Integer(), nullable=False),
        sa.Column('delta', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('training_job_id', sa.Integer(), nullable=True),
        *standard_columns(),
        sa.ForeignKeyConstraint(['minion_id'], ['minions.id'], name=op.f('fk_minion_xp_events_minion_id_minions'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['training_job_id'], ['training_jobs.id'], name=op.f('fk_minion_xp_events_training_job_id_training_jobs'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_minion_xp_events')),
        sa.UniqueConstraint('minion_id', 'reason', 'training_job_id', name=op.f('uq_minion_xp_events_minion_id_reason_training_job_id'))
    )
    op.create_index('ix_minion_xp_events_created_at_minion_id', 'minion_xp_events', ['created_at', 'minion_id'])
    op.create_index(op.f('ix_minion_xp_events_minion_id'), 'minion_xp_events', ['minion_id'])
    op.create_index(op.f('ix_minion_xp_events_training_job_id'), 'minion_xp_events', ['training_job_id'])

    op.create_table('minion_xp_gains',
        sa.Column('minion_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=8), nullable=False),
        sa.Column('period_start', TIMESTAMP, nullable=False),
        sa.Column('gained', sa.Integer(), server_default='0', nullable=False),
        *standard_columns(),
        sa.CheckConstraint("period IN ('week', 'month')", name=op.f('ck_minion_xp_gains_period_valid')),
        sa.ForeignKeyConstraint(['minion_id'], ['minions.id'], name=op.f('fk_minion_xp_gains_minion_id_minions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_minion_xp_gains')),
        sa.UniqueConstraint('period', 'period_start', 'minion_id', name=op.f('uq_minion_xp_gains_period_period_start_minion_id'))
    )
    op.create_index(op.f('ix_minion_xp_gains_minion_id'), 'minion_xp_gains', ['minion_id'])

    op.create_table('training_job_datasets',
        sa.Column('training_job_id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=False),
        sa.Column('split', sa.String(length=16), server_default='train', nullable=False),
        *standard_columns(),
        sa.CheckConstraint("split IN ('train', 'validation', 'test')", name=op.f('ck_training_job_datasets_split_valid')),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_training_job_datasets_dataset_id_datasets'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['training_job_id'], ['training_jobs.id'], name=op.f('fk_training_job_datasets_training_job_id_training_jobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_job_datasets')),
        sa.UniqueConstraint('training_job_id', 'dataset_id', 'split', name=op.f('uq_training_job_datasets_training_job_id_dataset_id_split'))
    )
    op.create_index(op.f('ix_training_job_datasets_dataset_id'), 'training_job_datasets', ['dataset_id'])
    op.create_index(op.f('ix_training_job_datasets_training_job_id'), 'training_job_datasets', ['training_job_id'])

    op.create_table('training_job_events',
        sa.Column('training_job_id', sa.Integer(), nullable=False),
        sa.Column('level', sa.String(length=8), server_default='info', nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('progress', sa.Float(), nullable=True),
        sa.Column('metrics', JSON, nullable=False),
        *standard_columns(),
        sa.CheckConstraint("level IN ('debug', 'info', 'warning', 'error')", name=op.f('ck_training_job_events_level_valid')),
        sa.CheckConstraint('progress IS NULL OR (progress >= 0 AND progress <= 1)', name=op.f('ck_training_job_events_progress_range')),
        sa.ForeignKeyConstraint(['training_job_id'], ['training_jobs.id'], name=op.f('fk_training_job_events_training_job_id_training_jobs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_training_job_events'))
    )
    op.create_index('ix_training_job_events_training_job_id_id', 'training_job_events', ['training_job_id', 'id'])

    # Expression indexes, which autogenerate does not render.
    op.create_index("uq_users_email_lower", "users", [sa.text("lower(email)")], unique=True)
    op.create_index("ix_minions_xp_id", "minions", [sa.text("xp DESC"), sa.text("id ASC")])
    op.create_index("ix_minion_xp_gains_board", "minion_xp_gains",
                    ["period", "period_start", sa.text("gained DESC"), sa.text("minion_id ASC")])

    if not is_sqlite():
        # The admin searches these with lower(column) LIKE '%term%' (users' are created with the table).
        for table, column in TRIGRAM_SEARCH_COLUMNS:
            op.create_index(f"ix_{table}_{column}_trgm", table, [sa.text(f"lower({column}) gin_trgm_ops")],
                            postgresql_using="gin")
        for name, table, column, target in DEFERRED_FOREIGN_KEYS:
            op.create_foreign_key(name, table, target, [column], ["id"], ondelete="SET NULL")


JOB_STATUSES = ('queued', 'running', 'succeeded', 'failed', 'canceled')

# training_job_status_counts follows every insert, status change and delete of a
# training job, whoever makes it (the ORM, COPY, ON DELETE CASCADE). PostgreSQL
# nets each statement's changes per status from its transition tables, so a COPY
# costs one update and a write that keeps the status locks no counter row.
POSTGRESQL_JOB_COUNT_FUNCTION = """
CREATE FUNCTION training_job_status_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE training_job_status_counts AS counts SET count = counts.count + changes.delta
        FROM (SELECT status, count(*) AS delta FROM new_rows GROUP BY status) AS changes
        WHERE counts.status = changes.status;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE training_job_status_counts AS counts SET count = counts.count - changes.delta
        FROM (SELECT status, count(*) AS delta FROM old_rows GROUP BY status) AS changes
        WHERE counts.status = changes.status;
    ELSE
        UPDATE training_job_status_counts AS counts SET count = counts.count + changes.delta
        FROM (
            SELECT status, sum(delta) AS delta FROM (
                SELECT status, 1 AS delta FROM new_rows UNION ALL SELECT status, -1 FROM old_rows
            ) AS moves GROUP BY status HAVING sum(delta) <> 0
        ) AS changes
        WHERE counts.status = changes.status;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRESQL_JOB_COUNT_TRIGGERS = {
    "insert": "AFTER INSERT ON training_jobs REFERENCING NEW TABLE AS new_rows",
    "update": "AFTER UPDATE ON training_jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "AFTER DELETE ON training_jobs REFERENCING OLD TABLE AS old_rows",
}
SQLITE_JOB_COUNT_TRIGGERS = {
    "insert": "AFTER INSERT ON training_jobs BEGIN {plus}; END",
    "update": "AFTER UPDATE OF status ON training_jobs WHEN OLD.status <> NEW.status BEGIN {minus}; {plus}; END",
    "delete": "AFTER DELETE ON training_jobs BEGIN {minus}; END",
}


def create_job_count_triggers():
    if is_sqlite():
        plus = "UPDATE training_job_status_counts SET count = count + 1 WHERE status = NEW.status"
        minus = "UPDATE training_job_status_counts SET count = count - 1 WHERE status = OLD.status"
        for event, body in SQLITE_JOB_COUNT_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER training_jobs_count_{event} {body.format(plus=plus, minus=minus)}")
        return
    op.execute(POSTGRESQL_JOB_COUNT_FUNCTION)
    for event, timing in POSTGRESQL_JOB_COUNT_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER training_jobs_count_{event} {timing}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION training_job_status_counts_apply()")


# Tables in creation order; downgrade drops them in reverse (indexes go with them).
TABLES = ['job_runners', 'migration_log', 'permissions', 'plans', 'providers', 'roles', 'users', 'audit_events', 'datasets', 'models', 'role_permissions', 'sessions', 'tokens', 'user_provider_configs', 'user_roles', 'user_subscriptions', 'model_versions', 'payments', 'usage_records', 'minions', 'training_jobs', 'training_job_status_counts', 'minion_xp_events', 'minion_xp_gains', 'training_job_datasets', 'training_job_events']


def downgrade():
    if not is_sqlite():
        for name, table, _column, _target in DEFERRED_FOREIGN_KEYS:
            op.drop_constraint(name, table, type_="foreignkey")
    for table in reversed(TABLES):
        op.drop_table(table)
    if not is_sqlite():
        op.execute("DROP FUNCTION training_job_status_counts_apply()")
