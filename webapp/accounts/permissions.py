"""Every permission code and the built-in roles: the one place both are defined.

The demo seed writes these rows; views declare the codes they need with
``@permission_required("users.read")``.
"""
from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "admin.access": "Open the admin area",
    "users.read": "See user accounts",
    "users.write": "Create, edit and deactivate user accounts",
    "tokens.issue": "Issue password reset and email verification tokens",
    "sessions.revoke": "Sign users out of their sessions",
    "accounts.lock": "Lock and unlock user accounts",
    "billing.read": "See plans, subscriptions and payments",
    "billing.manage": "Change plans, subscriptions and payments",
    "billing.refund": "Refund payments, in full or in part",
    "providers.read": "See the provider catalogue and users' provider settings",
    "providers.manage": "Edit the provider catalogue",
    "models.read": "See the model registry",
    "models.write": "Edit models and promote model versions",
    "jobs.read_all": "See every user's training jobs",
    "jobs.manage": "Cancel, retry and reassign any training job",
    "minions.read": "See every user's minions",
    "minions.write": "Edit minions and award XP",
    "audit.read": "Read the audit trail",
    "system.read": "See schema history and system status",
}

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "admin": tuple(PERMISSIONS),
    "support": ("users.read", "tokens.issue", "sessions.revoke", "accounts.lock", "audit.read", "billing.read",
                "billing.refund"),
    "user": (),
}

ROLE_DESCRIPTIONS: dict[str, str] = {
    "admin": "Runs the platform: every permission",
    "support": "Helps users get back into their accounts",
    "user": "A customer of the platform",
}
