"""Imports every domain's models so the metadata holds the whole schema."""
from webapp.accounts.models import (  # noqa: F401
    AuditEvent, Permission, Role, RolePermission, Token, User, UserRole, UserSession,
)
from webapp.billing.models import (  # noqa: F401
    BillingCustomer, CheckoutSession, Payment, Plan, UsageRecord, UserSubscription, WebhookEvent,
)
from webapp.datasets.models import Dataset  # noqa: F401
from webapp.metering.models import MeteringToken, UsageRollup  # noqa: F401
from webapp.minions.models import Minion, MinionXpEvent  # noqa: F401
from webapp.providers.models import AIModel, ModelVersion, Provider, UserProviderConfig  # noqa: F401
from webapp.system.models import MigrationLog, OutboxMessage  # noqa: F401
from webapp.training.models import (  # noqa: F401
    JobRunner, TrainingJob, TrainingJobDataset, TrainingJobEvent,
)
