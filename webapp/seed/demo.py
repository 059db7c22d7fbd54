"""``flask seed demo``: a small, believable data set that touches every table.

Idempotent: rows are looked up by their natural keys (emails, codes, slugs,
names, provider refs) and only the missing ones are created. Rows without a
natural key (usage records, job events, XP events, payments' history) are
created together with the parent they belong to, so a second run adds nothing.
Existing rows are never changed, except that each demo minion's xp and level
are recomputed from its XP events. Everything runs in one transaction.
"""
from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from webapp.accounts.models import AuditEvent, Permission, Role, RolePermission, Token, User, UserRole
from webapp.accounts.passwords import hash_password
from webapp.accounts.permissions import PERMISSIONS, ROLE_DESCRIPTIONS, ROLE_PERMISSIONS
from webapp.billing import alerts
from webapp.billing.models import (
    LIVE_SUBSCRIPTION_STATUSES, MANUAL, STRIPE, BillingCustomer, CheckoutSession, Payment, Plan, UserSubscription,
    WebhookEvent,
)
from webapp import quotas
from webapp.db import utcnow
from webapp.extensions import db
from webapp.metering.models import MeteringToken
from webapp.metering.services import store_usage
from webapp.mail import absolute_url, compose, keep_in_outbox
from webapp.minions.models import Minion, MinionXpEvent
from webapp.minions.services import add_gains, gains_from_events
from webapp.minions.xp import level_for_xp
from webapp.providers.models import AIModel, ModelVersion, Provider, UserProviderConfig
from webapp.seed import row_counts
from webapp.artifacts import new_key, write_stream
from webapp.datasets.models import Dataset
from webapp.seed.intents import intents_jsonl
from webapp.system.models import OutboxMessage
from webapp.training.models import (
    JobRunner, JobRunnerReport, TrainingJob, TrainingJobDataset, TrainingJobEvent, TrainingWorker,
)
from webapp.training.runtime import hyperparameters_for
from webapp.training.services import dispatch

# Users are named below by the part of their email before the "@".
# (email, display name, role, joined days ago, email verified)
USERS = [
    ("admin@demo.test", "Alex Admin", "admin", 120, True),
    ("support@demo.test", "Sam Support", "support", 110, True),
    ("ada@demo.test", "Ada Lovelace", "user", 95, True),
    ("grace@demo.test", "Grace Hopper", "user", 90, True),
    ("katherine.johnson@demo.test", "Katherine Johnson", "user", 80, True),
    ("donald.knuth@demo.test", "Donald Knuth", "user", 77, True),
    ("alan.turing@demo.test", "Alan Turing", "user", 75, True),
    ("margaret.hamilton@demo.test", "Margaret Hamilton", "user", 64, True),
    ("edsger.dijkstra@demo.test", "Edsger Dijkstra", "user", 58, True),
    ("barbara.liskov@demo.test", "Barbara Liskov", "user", 41, True),
    ("radia.perlman@demo.test", "Radia Perlman", "user", 23, True),
    ("john.backus@demo.test", "John Backus", "user", 9, False),
]

PLANS = [
    {
        "code": "free", "name": "Free", "price_cents": 0, "sort_order": 0,
        "description": "Try the platform with a couple of minions.",
        "quotas": {"tokens": 100_000, "requests": 1_000, "training_minutes": 60, "training_jobs": 2, "minions": 2},
        "features": ["2 minions", "Shared runners", "Community support"],
    },
    {
        "code": "pro", "name": "Pro", "price_cents": 2900, "sort_order": 10,
        "description": "For individuals who train their own models.",
        # Tokens and requests past the limit are billed (per 1,000), not refused: a Pro user's gateway keeps serving.
        "quotas": {"tokens": 1_000_000, "requests": 10_000, "training_minutes": 600, "training_jobs": 20, "minions": 5,
                   "overage": {"tokens": {"per": 1000, "cents": 2}, "requests": {"per": 1000, "cents": 50}}},
        "features": ["5 minions", "Custom models", "External providers", "Email support"],
    },
    {
        "code": "team", "name": "Team", "price_cents": 9900, "sort_order": 20,
        "description": "For small teams sharing datasets and runners.",
        "quotas": {"tokens": 10_000_000, "requests": 100_000, "training_minutes": 6_000, "training_jobs": 200, "minions": 50},
        "features": ["50 minions", "Custom models", "External providers", "Priority runners", "Priority support"],
    },
    {
        "code": "enterprise", "name": "Enterprise", "price_cents": 49900, "sort_order": 30, "is_public": False,
        "description": "Negotiated limits, dedicated runners and an SLA.",
        "quotas": {"tokens": 100_000_000, "requests": 1_000_000},
        "features": ["Unlimited minions", "Dedicated runners", "SSO", "99.9% SLA", "Account manager"],
    },
]

PROVIDERS = [
    {
        "slug": "openai", "name": "OpenAI", "api_style": "openai",
        "default_base_url": "https://api.openai.com/v1", "docs_url": "https://platform.openai.com/docs",
        "capabilities": ["chat", "embeddings", "vision", "tools", "fine_tuning"],
    },
    {
        "slug": "anthropic", "name": "Anthropic", "api_style": "anthropic",
        "default_base_url": "https://api.anthropic.com", "docs_url": "https://docs.anthropic.com",
        "capabilities": ["chat", "vision", "tools"],
    },
    {
        "slug": "google", "name": "Google Gemini", "api_style": "google",
        "default_base_url": "https://generativelanguage.googleapis.com/v1beta",
        "docs_url": "https://ai.google.dev/gemini-api/docs",
        "capabilities": ["chat", "embeddings", "vision", "tools", "fine_tuning"],
    },
    {
        "slug": "mistral", "name": "Mistral AI", "api_style": "openai",
        "default_base_url": "https://api.mistral.ai/v1", "docs_url": "https://docs.mistral.ai",
        "capabilities": ["chat", "embeddings", "tools", "fine_tuning"],
    },
    {
        "slug": "local-ollama", "name": "Ollama (local)", "api_style": "openai",
        "default_base_url": "http://localhost:11434/v1",
        "docs_url": "https://github.com/ollama/ollama/blob/main/docs/openai.md",
        "capabilities": ["chat", "embeddings"],
    },
]

# (provider, model key, name, context window, capabilities, US cents per million input / output tokens)
EXTERNAL_MODELS = [
    ("openai", "gpt-4o", "GPT-4o", 128_000, ["chat", "vision", "tools"], (250, 1000)),
    ("openai", "gpt-4o-mini", "GPT-4o mini", 128_000, ["chat", "vision", "tools", "fine_tuning"], (15, 60)),
    ("anthropic", "claude-sonnet-4", "Claude Sonnet 4", 200_000, ["chat", "vision", "tools"], (300, 1500)),
    ("google", "gemini-1.5-pro", "Gemini 1.5 Pro", 2_000_000, ["chat", "vision", "tools"], (125, 500)),
    ("mistral", "mistral-large", "Mistral Large", 128_000, ["chat", "tools", "fine_tuning"], (200, 600)),
]

# Open-weight models to start from; no provider means "bring your own runtime".
# (provider or None, model key, name, context window, billions of parameters, licence)
REFERENCE_MODELS = [
    ("local-ollama", "llama-3-8b", "Llama 3 8B", 8_192, 8.0, "llama3"),
    ("local-ollama", "mistral-7b", "Mistral 7B", 32_768, 7.3, "apache-2.0"),
    (None, "phi-3-mini", "Phi-3 Mini", 4_096, 3.8, "mit"),
    (None, "qwen2-7b", "Qwen2 7B", 32_768, 7.6, "apache-2.0"),
]

# (owner, model key, name, base model key, description)
CUSTOM_MODELS = [
    ("ada", "poetry-assistant", "Poetry Assistant", "llama-3-8b", "Writes verse about engines and numbers."),
    ("ada", "engine-notes", "Engine Notes", "gpt-4o-mini", "Answers questions about the Analytical Engine notes."),
    ("grace", "cobol-copilot", "COBOL Copilot", "llama-3-8b", "Completes and explains COBOL."),
    ("grace", "bug-hunter", "Bug Hunter", "mistral-large", "Finds the moth in the relay."),
]

# (owner or None for the platform's public ones, slug, name, format, rows, bytes, tags)
DATASETS = [
    (None, "alpaca-cleaned", "Alpaca (cleaned)", "jsonl", 51_760, 44_307_561, ["instructions", "english"]),
    (None, "oasst1", "OpenAssistant Conversations", "jsonl", 84_437, 96_012_288, ["chat", "multilingual"]),
    (None, "gsm8k", "Grade School Math 8K", "jsonl", 8_792, 4_812_030, ["math", "reasoning"]),
    (None, "code-review-comments", "Code Review Comments", "parquet", 412_000, 310_554_112, ["code"]),
    ("ada", "victorian-poetry", "Victorian Poetry Corpus", "jsonl", 12_400, 9_118_204, ["poetry"]),
    ("ada", "engine-notes-qa", "Engine Notes Q&A", "csv", 1_843, 620_415, ["qa", "history"]),
    ("grace", "cobol-snippets", "COBOL Snippets", "parquet", 230_000, 180_224_000, ["code", "cobol"]),
    ("grace", "relay-bug-reports", "Relay Bug Reports", "jsonl", 3_120, 2_402_113, ["bugs"]),
]

# (owner, name, model key, status)
MINIONS = [
    ("ada", "Quill", "poetry-assistant", "active"),
    ("ada", "Byron", "poetry-assistant", "idle"),
    ("ada", "Cog", "engine-notes", "training"),
    ("grace", "Nanosecond", "cobol-copilot", "active"),
    ("grace", "Moth", "bug-hunter", "training"),
    ("grace", "Flow-Matic", "gpt-4o", "idle"),
    ("admin", "Sentinel", "claude-sonnet-4", "active"),
    ("katherine.johnson", "Trajectory", "gemini-1.5-pro", "active"),
    ("katherine.johnson", "Orbit", "gpt-4o-mini", "idle"),
    ("donald.knuth", "TeX", "qwen2-7b", "active"),
    ("donald.knuth", "Literate", "llama-3-8b", "retired"),
    ("alan.turing", "Enigma", "gpt-4o", "active"),
    ("alan.turing", "Bombe", "llama-3-8b", "retired"),
    ("margaret.hamilton", "Apollo", "claude-sonnet-4", "active"),
    ("margaret.hamilton", "Priority", "mistral-large", "idle"),
    ("edsger.dijkstra", "Semaphore", "mistral-7b", "active"),
    ("edsger.dijkstra", "Shortest Path", "phi-3-mini", "idle"),
    ("barbara.liskov", "Substitute", "gpt-4o-mini", "active"),
    ("radia.perlman", "Spanning Tree", "gemini-1.5-pro", "active"),
    ("john.backus", "Fortran", "mistral-large", "idle"),
]
MINION_COLORS = ["#f5c542", "#4aa3df", "#e4572e", "#76b041", "#9b5de5", "#00b8a9"]
MINION_TEMPERAMENTS = ["curious", "diligent", "cheeky", "stoic", "chatty", "meticulous"]


@dataclass(frozen=True)
class JobSpec:
    owner: str
    name: str
    status: str
    base_model: str
    queued_days_ago: float
    datasets: tuple[tuple[str, str], ...]  # (dataset slug, split)
    minion: str | None = None
    provider: str | None = None  # set for external jobs
    produces: tuple[str, str, str, str | None] | None = None  # (model key, version, stage, parent version)
    retry_of: str | None = None
    progress: float | None = None
    error: str | None = None


# In dependency order: a retry comes after its original, a version after its parent.
TRAINING_JOBS = [
    JobSpec("ada", "Poetry Assistant v1", "succeeded", "llama-3-8b", 48,
            (("victorian-poetry", "train"), ("alpaca-cleaned", "validation")),
            minion="Quill", produces=("poetry-assistant", "v1", "archived", None)),
    JobSpec("ada", "Poetry Assistant v2", "succeeded", "llama-3-8b", 31,
            (("victorian-poetry", "train"), ("alpaca-cleaned", "validation"), ("gsm8k", "test")),
            minion="Quill", produces=("poetry-assistant", "v2", "production", "v1")),
    JobSpec("ada", "Poetry Assistant v3", "succeeded", "llama-3-8b", 9,
            (("victorian-poetry", "train"), ("oasst1", "validation"), ("gsm8k", "test")),
            minion="Byron", produces=("poetry-assistant", "v3", "staging", "v2")),
    JobSpec("ada", "Poetry Assistant long context", "canceled", "llama-3-8b", 15,
            (("victorian-poetry", "train"), ("alpaca-cleaned", "validation")), minion="Byron", progress=0.15),
    JobSpec("ada", "Engine Notes distillation", "failed", "gpt-4o-mini", 6,
            (("engine-notes-qa", "train"), ("engine-notes-qa", "validation")), minion="Cog", provider="openai",
            progress=0.0, error="The provider rejected the training file: line 412 is not valid JSON."),
    JobSpec("ada", "Engine Notes distillation (retry)", "canceled", "gpt-4o-mini", 0.2,
            (("engine-notes-qa", "train"), ("engine-notes-qa", "validation")), minion="Cog", provider="openai",
            retry_of="Engine Notes distillation", progress=0.4),
    JobSpec("ada", "Poetry Assistant v4", "failed", "llama-3-8b", 0.05,
            (("victorian-poetry", "train"), ("oasst1", "validation"), ("gsm8k", "test")), minion="Quill",
            progress=0.6, error="Worker lost: runner-2 stopped heartbeating, after 2 of 2 attempts."),
    JobSpec("grace", "COBOL Copilot v1", "succeeded", "llama-3-8b", 27,
            (("cobol-snippets", "train"), ("code-review-comments", "validation")),
            minion="Nanosecond", produces=("cobol-copilot", "v1", "production", None)),
    JobSpec("grace", "COBOL Copilot v2", "failed", "llama-3-8b", 14,
            (("cobol-snippets", "train"), ("code-review-comments", "validation")), minion="Nanosecond",
            progress=0.35, error="CUDA out of memory at step 1,200 (batch size 32); retry with a smaller batch."),
    JobSpec("grace", "COBOL Copilot v2 (retry)", "succeeded", "llama-3-8b", 13,
            (("cobol-snippets", "train"), ("code-review-comments", "validation"), ("relay-bug-reports", "test")),
            minion="Nanosecond", retry_of="COBOL Copilot v2", produces=("cobol-copilot", "v2", "none", "v1")),
    JobSpec("grace", "COBOL Copilot v3", "canceled", "llama-3-8b", 4,
            (("cobol-snippets", "train"), ("code-review-comments", "validation")), minion="Nanosecond", progress=0.1),
    JobSpec("grace", "Bug Hunter v1", "failed", "mistral-large", 0.3,
            (("relay-bug-reports", "train"), ("code-review-comments", "validation")), minion="Moth",
            provider="mistral", progress=0.42,
            error="The provider stopped the job: the training loss diverged at step 1,050."),
    JobSpec("grace", "Bug Hunter evaluation sweep", "canceled", "gpt-4o-mini", 0.02,
            (("relay-bug-reports", "train"), ("relay-bug-reports", "test")), minion="Moth", provider="openai",
            progress=0.0),
]
# The one queued demo job: real data, run by the embedded worker on the first start.
FIRST_JOB_NAME = "Quill support triage v1"
FIRST_JOB_MINION = "Quill"
# (slug, name, rows, generator seed): the train split, then the validation split.
FIRST_JOB_DATASETS = [("support-intents-train", "Support intents (train)", 480, 1),
                      ("support-intents-validation", "Support intents (validation)", 120, 2)]
JOB_DURATIONS = {"succeeded": timedelta(hours=2, minutes=15), "failed": timedelta(minutes=40),
                 "canceled": timedelta(minutes=25)}
XP_FOR_SUCCEEDED_JOB = 150

# (user, plan, status, period started days ago, canceled days ago)
SUBSCRIPTIONS = [
    ("ada", "free", "expired", 40, None),
    ("ada", "pro", "active", 10, None),
    ("grace", "pro", "canceled", 42, 14),
    ("grace", "team", "active", 12, None),
    ("katherine.johnson", "free", "active", 15, None),
    ("donald.knuth", "pro", "canceled", 50, 25),
    ("alan.turing", "free", "active", 22, None),
    ("margaret.hamilton", "pro", "active", 25, None),
    ("edsger.dijkstra", "pro", "past_due", 1, None),
    ("barbara.liskov", "team", "trialing", 4, None),
    ("radia.perlman", "free", "active", 5, None),
]
BILLING_PERIOD = timedelta(days=30)
# Donald paid Pro by card through Stripe, until he cancelled it (the demo's Stripe history).
STRIPE_SUBSCRIPTIONS = {("donald.knuth", "pro"): ("cus_DemoKnuth", "cs_demo_knuth_pro")}
# Margaret has asked to move down to Free when her Pro period ends.
PENDING_DOWNGRADES = {("margaret.hamilton", "pro"): "free"}

# (user, plan of the subscription, status, days ago, failure reason)
PAYMENTS = [
    ("ada", "pro", "succeeded", 10, None),
    ("grace", "pro", "succeeded", 42, None),
    ("grace", "team", "succeeded", 12, None),
    ("donald.knuth", "pro", "succeeded", 50, None),
    ("donald.knuth", "pro", "refunded", 20, None),
    ("margaret.hamilton", "pro", "succeeded", 25, None),
    ("edsger.dijkstra", "pro", "failed", 1, "Card declined: insufficient funds."),
    ("barbara.liskov", "team", "pending", 0, None),
]

# Models each heavy user calls, and the one their training minutes are billed to.
USAGE_MODELS = {"ada": (("gpt-4o-mini", "claude-sonnet-4", "poetry-assistant"), "poetry-assistant"),
                "grace": (("gpt-4o", "mistral-large", "cobol-copilot"), "cobol-copilot")}

PROVIDER_CONFIGS = [("ada", "openai", True), ("ada", "anthropic", True), ("grace", "openai", True),
                    ("grace", "mistral", True), ("grace", "local-ollama", False)]


def seed_demo(password: str) -> dict[str, int]:
    """Create whatever demo rows are missing; return the rows created per table.

    ``password`` becomes the password of every demo account created by this run.
    """
    before = row_counts()
    try:
        _DemoSeed(password).run()
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    after = row_counts()
    return {table: after[table] - before[table] for table in after}


def _ensure(model: type, lookup: dict[str, Any], **values: Any) -> tuple[Any, bool]:
    """The row matching ``lookup``, created with ``values`` if missing; True when created."""
    row = db.session.scalars(select(model).filter_by(**lookup).limit(1)).first()
    if row is not None:
        return row, False
    row = model(**lookup, **values)
    db.session.add(row)
    db.session.flush()
    return row, True


def _unusable_token_hash() -> str:
    """The SHA-256 of a random secret nobody keeps: a token that can never be presented."""
    return hashlib.sha256(secrets.token_bytes(32)).hexdigest()


class _DemoSeed:
    def __init__(self, password: str) -> None:
        self.password = password
        self._password_hash: str | None = None
        self.now = utcnow()
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}
        self.plans: dict[str, Plan] = {}
        self.providers: dict[str, Provider] = {}
        self.models: dict[str, AIModel] = {}
        self.datasets: dict[tuple[str | None, str], Dataset] = {}
        self.minions: dict[tuple[str, str], Minion] = {}
        self.new_minions: list[Minion] = []
        self.new_xp_events: list[MinionXpEvent] = []
        self.jobs: dict[tuple[str, str], TrainingJob] = {}
        self.live_subscriptions: dict[str, tuple[UserSubscription, bool]] = {}
        self.usage_rows: list[dict[str, Any]] = []

    @property
    def password_hash(self) -> str:
        """Hashed once per run: every demo account shares the one demo password anyway."""
        if self._password_hash is None:
            self._password_hash = hash_password(self.password)
        return self._password_hash

    def ago(self, days: float = 0, **kwargs: float) -> datetime:
        return self.now - timedelta(days=days, **kwargs)

    def run(self) -> None:
        self.seed_roles()
        self.seed_users()
        self.seed_plans_and_subscriptions()
        self.seed_payments()
        self.seed_stripe_history()
        self.seed_catalogue()
        self.seed_provider_configs()
        self.seed_datasets()
        self.seed_minions()
        self.seed_training_jobs()
        self.seed_first_job()
        self.seed_xp()
        self.seed_usage()
        self.seed_usage_alerts()
        self.seed_operations()

    # --- accounts ------------------------------------------------------------

    def seed_roles(self) -> None:
        permissions = {
            code: _ensure(Permission, {"code": code}, description=description)[0]
            for code, description in PERMISSIONS.items()
        }
        for name, codes in ROLE_PERMISSIONS.items():
            role, _ = _ensure(Role, {"name": name}, description=ROLE_DESCRIPTIONS[name])
            for code in codes:
                _ensure(RolePermission, {"role_id": role.id, "permission_id": permissions[code].id})
            self.roles[name] = role

    def seed_users(self) -> None:
        for email, display_name, role, joined_days_ago, verified in USERS:
            user = db.session.scalars(select(User).where(func.lower(User.email) == email)).first()
            if user is None:
                joined = self.ago(joined_days_ago)
                user = User(
                    email=email,
                    display_name=display_name,
                    password_hash=self.password_hash,
                    email_verified_at=joined + timedelta(minutes=7) if verified else None,
                    last_login_at=self.ago(hours=joined_days_ago % 30 + 1) if verified else None,
                    created_at=joined,
                    updated_at=joined,
                )
                db.session.add(user)
                db.session.flush()
            _ensure(UserRole, {"user_id": user.id, "role_id": self.roles[role].id})
            self.users[email.split("@")[0]] = user

    # --- billing -------------------------------------------------------------

    def seed_plans_and_subscriptions(self) -> None:
        for spec in PLANS:
            values = dict(spec)
            self.plans[spec["code"]], _ = _ensure(Plan, {"code": values.pop("code")}, **values)
        for handle, plan_code, status, started_days_ago, canceled_days_ago in SUBSCRIPTIONS:
            user = self.users[handle]
            start = self.ago(started_days_ago)
            pending = PENDING_DOWNGRADES.get((handle, plan_code))
            subscription, created = _ensure(
                UserSubscription,
                {"provider_ref": f"demo-sub-{handle}-{plan_code}"},
                user_id=user.id,
                plan_id=self.plans[plan_code].id,
                status=status,
                current_period_start=start,
                current_period_end=start + BILLING_PERIOD,
                canceled_at=self.ago(canceled_days_ago) if canceled_days_ago is not None else None,
                cancel_at_period_end=False,  # a scheduled downgrade is not a cancellation
                pending_plan_id=self.plans[pending].id if pending else None,
                provider=STRIPE if (handle, plan_code) in STRIPE_SUBSCRIPTIONS else MANUAL,
                created_at=start,
                updated_at=start,
            )
            if subscription.status in LIVE_SUBSCRIPTION_STATUSES:
                self.live_subscriptions[handle] = (subscription, created)
                if user.current_subscription_id is None:
                    user.current_subscription_id = subscription.id

    def seed_payments(self) -> None:
        for handle, plan_code, status, days_ago, failure_reason in PAYMENTS:
            subscription = db.session.scalars(
                select(UserSubscription).filter_by(provider_ref=f"demo-sub-{handle}-{plan_code}")
            ).one()
            plan = self.plans[plan_code]
            at = min(self.ago(days_ago) + timedelta(minutes=3), self.now)
            ref = f"demo-pay-{handle}-{plan_code}-{status}"
            _ensure(
                Payment,
                {"provider_ref": ref},
                idempotency_key=f"{ref}-key",
                user_id=self.users[handle].id,
                subscription_id=subscription.id,
                amount_cents=plan.price_cents,
                status=status,
                description=f"{plan.name} plan, monthly",
                paid_at=at if status in ("succeeded", "refunded") else None,
                failure_reason=failure_reason,
                created_at=at,
                updated_at=at,
            )

    def seed_stripe_history(self) -> None:
        """A customer, the checkout that started the subscription, and the events Stripe sent about it."""
        for (handle, plan_code), (customer_ref, session_ref) in STRIPE_SUBSCRIPTIONS.items():
            user = self.users[handle]
            subscription = db.session.scalars(
                select(UserSubscription).filter_by(provider_ref=f"demo-sub-{handle}-{plan_code}")).one()
            _ensure(BillingCustomer, {"user_id": user.id}, provider=STRIPE, customer_ref=customer_ref)
            _ensure(CheckoutSession, {"session_ref": session_ref}, user_id=user.id, plan_id=self.plans[plan_code].id,
                    status="completed", subscription_id=subscription.id, created_at=subscription.created_at)
            for event_type, at, document in (
                ("checkout.session.completed", subscription.current_period_start,
                 {"object": "checkout.session", "id": session_ref, "customer": customer_ref,
                  "subscription": subscription.provider_ref, "mode": "subscription", "status": "complete"}),
                ("customer.subscription.deleted", subscription.canceled_at,
                 {"object": "subscription", "id": subscription.provider_ref, "customer": customer_ref,
                  "status": "canceled"}),
            ):
                event_ref = f"evt_demo_{handle}_{event_type}".replace(".", "_")
                _ensure(WebhookEvent, {"provider": STRIPE, "event_ref": event_ref}, event_type=event_type,
                        occurred_at=at, outcome="applied",
                        payload={"id": event_ref, "object": "event", "type": event_type,
                                 "created": int(at.timestamp()), "data": {"object": document}})

    def seed_usage_alerts(self) -> None:
        """The crossings of this period's use that the alerts beat task would have recorded (and mailed)."""
        for user in self.users.values():
            terms = quotas.allowance(user, self.now)
            for crossing in alerts.crossings(user, terms):
                alerts.record_crossing(user, terms, crossing)

    def seed_usage(self) -> None:
        """Several records a day for every metric over the heavy users' current period."""
        for handle, (model_keys, training_model_key) in USAGE_MODELS.items():
            subscription, created = self.live_subscriptions[handle]
            if not created:
                continue
            rng = random.Random(f"usage-{handle}")
            user = self.users[handle]
            day = subscription.current_period_start
            while day < self.now:
                for hour in (1, 5, 9):
                    at = day + timedelta(hours=hour, minutes=rng.randrange(60))
                    if at >= self.now:
                        break
                    requests = rng.randint(20, 400)
                    quantities = {
                        "requests": requests,
                        "input_tokens": requests * rng.randint(300, 1500),
                        "output_tokens": requests * rng.randint(80, 600),
                    }
                    model = self.models[rng.choice(model_keys)]
                    for metric, quantity in quantities.items():
                        self.add_usage(user, subscription, model, metric, quantity, at)
                at = day + timedelta(hours=12)
                if at < self.now:
                    self.add_usage(user, subscription, self.models[training_model_key], "training_minutes",
                                   rng.randint(5, 90), at)
                day += timedelta(days=1)
        # Through the metering path, so the daily rollup the meters read holds the same sums.
        store_usage(self.usage_rows, self.now)

    def add_usage(self, user, subscription, model, metric, quantity, at) -> None:
        self.usage_rows.append({
            "event_id": f"demo-{user.id}-{metric}-{at:%Y%m%dT%H%M%S}", "user_id": user.id,
            "subscription_id": subscription.id, "model_id": model.id, "metric": metric, "quantity": quantity,
            "occurred_at": at, "created_at": at, "updated_at": at,
        })

    # --- providers and models ------------------------------------------------

    def seed_catalogue(self) -> None:
        for spec in PROVIDERS:
            values = dict(spec)
            self.providers[spec["slug"]], _ = _ensure(Provider, {"slug": values.pop("slug")}, **values)
        for provider, key, name, context_window, capabilities, (input_cents, output_cents) in EXTERNAL_MODELS:
            self.models[key], _ = _ensure(
                AIModel,
                {"provider_id": self.providers[provider].id, "model_key": key},
                model_type="external", name=name, context_window=context_window,
                capabilities=capabilities, tags=["hosted"],
                pricing={"currency": "USD", "input_per_million_cents": input_cents,
                         "output_per_million_cents": output_cents},
                description=f"{name}, served by {self.providers[provider].name}.",
            )
        for provider, key, name, context_window, billions, licence in REFERENCE_MODELS:
            self.models[key], _ = _ensure(
                AIModel,
                {"provider_id": self.providers[provider].id if provider else None, "model_key": key},
                model_type="reference", name=name, context_window=context_window,
                capabilities=["chat", "fine_tuning"], tags=["open-weights", licence],
                parameters={"parameters_billions": billions, "license": licence},
                description=f"{name}, open weights to fine-tune on the platform's runners.",
            )
        for handle, key, name, base_key, description in CUSTOM_MODELS:
            base = self.models[base_key]
            self.models[key], _ = _ensure(
                AIModel,
                {"owner_user_id": self.users[handle].id, "model_key": key},
                model_type="custom", name=name, description=description,
                context_window=base.context_window, capabilities=["chat"], tags=["fine-tuned"],
                parameters={"base_model": base_key, "adapter": "lora", "lora_rank": 16},
            )

    def seed_provider_configs(self) -> None:
        # The API keys stay empty: encrypting them belongs to the provider settings code.
        for handle, slug, enabled in PROVIDER_CONFIGS:
            _ensure(
                UserProviderConfig,
                {"user_id": self.users[handle].id, "provider_id": self.providers[slug].id},
                is_enabled=enabled, base_url=None, settings={},
            )

    # --- training ------------------------------------------------------------

    def seed_datasets(self) -> None:
        for handle, slug, name, fmt, rows, size, tags in DATASETS:
            owner = self.users[handle] if handle else None
            folder = f"users/{owner.id}" if owner else "public"
            self.datasets[(handle, slug)], _ = _ensure(
                Dataset,
                {"owner_user_id": owner.id if owner else None, "slug": slug},
                name=name, format=fmt, row_count=rows, size_bytes=size, tags=tags,
                visibility="private" if owner else "public",
                uri=f"s3://minion-datasets/{folder}/{slug}.{fmt}",
                checksum="sha256:" + hashlib.sha256(f"{folder}/{slug}".encode()).hexdigest(),
                description=f"{name}: {rows:,} rows of {fmt}.",
            )

    def seed_minions(self) -> None:
        for handle, name, model_key, status in MINIONS:
            owner = self.users[handle]
            rng = random.Random(f"minion-{name}")
            born = max(owner.created_at, self.ago(65)) + timedelta(hours=1)
            minion, created = _ensure(
                Minion,
                {"owner_user_id": owner.id, "name": name},
                model_id=self.models[model_key].id,
                status=status,
                attributes={"color": rng.choice(MINION_COLORS), "temperament": rng.choice(MINION_TEMPERAMENTS)},
                created_at=born,
                updated_at=born,
            )
            self.minions[(handle, name)] = minion
            if created:
                self.new_minions.append(minion)

    def seed_training_jobs(self) -> None:
        for spec in TRAINING_JOBS:
            user = self.users[spec.owner]
            job, created = _ensure(TrainingJob, {"user_id": user.id, "name": spec.name}, **self.job_values(spec))
            self.jobs[(spec.owner, spec.name)] = job
            if not created:
                continue
            for slug, split in spec.datasets:
                dataset = self.datasets.get((spec.owner, slug)) or self.datasets[(None, slug)]
                db.session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split=split))
            if spec.produces:
                self.register_version(job, spec)
            self.add_job_events(job)
        # Minions on a custom model run its production version.
        for minion in self.minions.values():
            if minion.model_version_id is None:
                minion.model_version_id = db.session.scalar(
                    select(ModelVersion.id).filter_by(model_id=minion.model_id, stage="production").limit(1)
                )

    def seed_first_job(self) -> None:
        """Ada's queued job on a small real dataset: the embedded worker runs it on the first start."""
        ada = self.users["ada"]
        datasets = {}
        for slug, name, rows, seed in FIRST_JOB_DATASETS:
            dataset = db.session.scalars(select(Dataset).filter_by(owner_user_id=ada.id, slug=slug)).first()
            if dataset is None:
                content = intents_jsonl(rows, seed)
                stored = write_stream(new_key("datasets", str(ada.id), suffix=".jsonl"), [content])
                dataset = Dataset(owner_user_id=ada.id, slug=slug, name=name, format="jsonl", uri=stored.uri,
                                  size_bytes=stored.size_bytes, row_count=rows, checksum="sha256:" + stored.sha256,
                                  tags=["demo", "intents"], visibility="private",
                                  description=f"{name}: {rows} support messages and the team each belongs to.")
                db.session.add(dataset)
                db.session.flush()
            datasets[slug] = dataset
        minion = self.minions[("ada", FIRST_JOB_MINION)]
        job, created = _ensure(
            TrainingJob, {"user_id": ada.id, "name": FIRST_JOB_NAME},
            minion_id=minion.id, base_model_id=minion.model_id, job_type="internal", status="queued",
            hyperparameters={field.name: field.default for field in hyperparameters_for("internal")},
            queued_at=self.now, max_attempts=current_app.config["JOB_MAX_ATTEMPTS"],
        )
        if created:
            for (slug, *_), split in zip(FIRST_JOB_DATASETS, ("train", "validation")):
                db.session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=datasets[slug].id, split=split))
            db.session.add(TrainingJobEvent(training_job_id=job.id, message="Queued by Ada Lovelace", progress=0.0))
            dispatch(job)

    def job_values(self, spec: JobSpec) -> dict[str, Any]:
        queued = self.ago(spec.queued_days_ago)
        started = queued + timedelta(minutes=6) if spec.status != "queued" else None
        finished = started + JOB_DURATIONS[spec.status] if spec.status in JOB_DURATIONS else None
        succeeded = spec.status == "succeeded"
        progress = 1.0 if succeeded else spec.progress or 0.0
        loss = round(2.4 - 1.7 * progress, 4)
        values = {
            "base_model_id": self.models[spec.base_model].id,
            "minion_id": self.minions[(spec.owner, spec.minion)].id if spec.minion else None,
            "job_type": "external" if spec.provider else "internal",
            "provider_id": self.providers[spec.provider].id if spec.provider else None,
            "external_job_id": "ftjob-" + hashlib.sha1(spec.name.encode()).hexdigest()[:24] if spec.provider else None,
            "status": spec.status,
            "progress": progress,
            "hyperparameters": {"epochs": 3, "learning_rate": 0.0002, "batch_size": 16, "lora_rank": 16},
            "metrics": {"loss": loss, "eval_loss": round(loss * 1.08, 4)} if started else {},
            "error_message": spec.error,
            "queued_at": queued,
            "started_at": started,
            "finished_at": finished,
            "retry_of_id": self.jobs[(spec.owner, spec.retry_of)].id if spec.retry_of else None,
            "created_at": queued,
            "updated_at": finished or started or queued,
        }
        return values

    def register_version(self, job: TrainingJob, spec: JobSpec) -> None:
        """The model version a succeeded job produced, linked both ways, with its lineage."""
        model_key, version_name, stage, parent_name = spec.produces
        model = self.models[model_key]
        parent = db.session.scalars(
            select(ModelVersion).filter_by(model_id=model.id, version=parent_name)
        ).one() if parent_name else None
        version, _ = _ensure(
            ModelVersion,
            {"model_id": model.id, "version": version_name},
            parent_version_id=parent.id if parent else None,
            training_job_id=job.id,
            stage=stage,
            artifact_uri=f"s3://minion-models/{model.owner_user_id}/{model_key}/{version_name}",
            metrics=dict(job.metrics),
            created_by_id=job.user_id,
            created_at=job.finished_at,
            updated_at=job.finished_at,
        )
        job.output_model_version_id = version.id

    def add_job_events(self, job: TrainingJob) -> None:
        rng = random.Random(f"job-{job.name}")
        events = [(job.queued_at, "info", "Queued", 0.0, {})]
        if job.started_at:
            end = job.finished_at or self.now
            runner = job.provider.name if job.provider else "demo-runner"
            events.append((job.started_at, "info", f"Started on {runner}", 0.0, {}))
            steps = max(1, int(job.progress * 5))  # one report per fifth of the progress reached, at least one
            for step in range(1, steps + 1):
                progress = min(1.0, step / 5)
                at = job.started_at + (end - job.started_at) * step / (steps + 1)
                loss = round(2.4 - 1.7 * progress + rng.uniform(-0.05, 0.05), 4)
                events.append((at, "info", f"Step {step * 240} of 1200", progress,
                               {"loss": loss, "learning_rate": 0.0002, "step": step * 240}))
        if job.status == "succeeded":
            events.append((job.finished_at, "info", "Finished; model version registered", 1.0, dict(job.metrics)))
        elif job.status == "failed":
            events.append((job.finished_at, "error", job.error_message, job.progress, {}))
        elif job.status == "canceled":
            events.append((job.finished_at, "warning", "Canceled by the owner", job.progress, {}))
        for at, level, message, progress, metrics in events:
            db.session.add(TrainingJobEvent(
                training_job_id=job.id, level=level, message=message, progress=progress,
                metrics=metrics, created_at=at, updated_at=at,
            ))

    # --- minions -------------------------------------------------------------

    def seed_xp(self) -> None:
        """XP only ever comes from events; each minion's xp is their sum."""
        new_ids = {minion.id for minion in self.new_minions}
        for job in self.jobs.values():
            if job.status == "succeeded" and job.minion_id in new_ids:
                self.add_xp(job.minion_id, XP_FOR_SUCCEEDED_JOB, "training_job.succeeded", job.finished_at, job.id)
        for minion in self.new_minions:
            rng = random.Random(f"xp-{minion.name}")
            for _ in range(rng.randint(4, 12)):
                at = minion.created_at + (self.now - minion.created_at) * rng.random()
                if rng.random() < 0.2:
                    self.add_xp(minion.id, rng.choice((75, 120, 200)), "quest.completed", at)
                else:
                    self.add_xp(minion.id, rng.choice((10, 20, 25, 50)), "daily_challenge", at)
        db.session.flush()
        # The leaderboard's week and month gains, rolled up from the new events like award_xp does.
        add_gains(gains_from_events(
            (event.minion_id, event.delta, event.created_at) for event in self.new_xp_events
        ))
        ids = [minion.id for minion in self.minions.values()]
        totals = dict(db.session.execute(
            select(MinionXpEvent.minion_id, func.sum(MinionXpEvent.delta))
            .where(MinionXpEvent.minion_id.in_(ids))
            .group_by(MinionXpEvent.minion_id)
        ).all())
        for minion in self.minions.values():
            minion.xp = int(totals.get(minion.id, 0))
            minion.level = level_for_xp(minion.xp)

    def add_xp(self, minion_id: int, delta: int, reason: str, at: datetime, job_id: int | None = None) -> None:
        event = MinionXpEvent(
            minion_id=minion_id, delta=delta, reason=reason, training_job_id=job_id,
            created_at=at, updated_at=at,
        )
        db.session.add(event)
        self.new_xp_events.append(event)

    # --- operations: runner, tokens, audit trail -----------------------------

    def seed_operations(self) -> None:
        runner, _ = _ensure(JobRunner, {"name": "demo-runner"}, token_hash=_unusable_token_hash(),
                            last_seen_at=self.ago(minutes=1))
        reported = db.session.scalars(
            select(TrainingJob).where(TrainingJob.status == "succeeded").order_by(TrainingJob.id).limit(1)).first()
        if reported is not None:
            _ensure(JobRunnerReport, {"runner_id": runner.id, "report_id": f"demo-job-{reported.id}-final"},
                    training_job_id=reported.id,
                    response={"job": reported.id, "status": reported.status, "progress": reported.progress,
                              "output_model_version_id": reported.output_model_version_id})
        # The inference gateway's metering token (its value unknown: create a real one with flask metering create-token).
        _ensure(MeteringToken, {"name": "demo-gateway"}, token_hash=_unusable_token_hash(), last_used_at=self.ago(minutes=3))
        # The worker that ran the demo's history, stopped since; a real worker adds its own row when it starts.
        _ensure(TrainingWorker, {"name": "celery@demo-gpu-1"}, host="demo-gpu-1", pid=None,
                queues=[current_app.config["CELERY_QUEUE"]], started_at=self.ago(30), heartbeat_at=self.ago(2),
                stopped_at=self.ago(2), processed=48, failed=3)
        admin, support, grace = self.users["admin"], self.users["support"], self.users["grace"]
        issued = self.ago(2, hours=1)
        token, _ = _ensure(
            Token, {"user_id": grace.id, "type": "password_reset"},
            token_hash=_unusable_token_hash(), issued_by_id=support.id,
            expires_at=issued + timedelta(hours=1), used_at=issued + timedelta(minutes=12),
            created_at=issued, updated_at=issued + timedelta(minutes=12),
        )
        ada_pro, _ = self.live_subscriptions["ada"]
        audit = [
            (admin, "demo.seeded", "system", None, {"users": len(USERS), "minions": len(MINIONS)}),
            (support, "token.issued", "tokens", token.id, {"type": "password_reset", "user": grace.email}),
            (self.users["ada"], "subscription.changed", "user_subscriptions", ada_pro.id, {"plan": ["free", "pro"]}),
        ]
        for actor, action, object_type, object_id, changes in audit:
            _ensure(
                AuditEvent, {"action": action, "object_type": object_type, "object_id": object_id},
                actor_id=actor.id, changes=changes, ip_address="127.0.0.1",
            )
        if not db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.recipient == grace.email).limit(1)):
            # The mail support's reset link went out in; the link's token is the used one above.
            message = compose(grace.email, "Reset your Minion Console password", "password_reset", user=grace,
                              link=absolute_url("accounts.password_reset", token=secrets.token_urlsafe(32)),
                              minutes=60, issued_by=support)
            keep_in_outbox(message)
            db.session.flush()
