"""Test data, one factory per model. Each adds to db.session and flushes; nothing commits."""
from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from functools import lru_cache

from sqlalchemy import select

from webapp.accounts.models import Permission, Role, User
from webapp.accounts.passwords import hash_password
from webapp.accounts.permissions import PERMISSIONS, ROLE_PERMISSIONS
from webapp.db import utcnow
from webapp.extensions import db

PASSWORD = "correct horse battery staple"
_sequence = itertools.count(1)


@lru_cache
def password_hash() -> str:
    # argon2 is deliberately slow; hash the shared test password once.
    return hash_password(PASSWORD)


def ensure_roles() -> dict[str, Role]:
    """The built-in roles and permissions, created once per test transaction."""
    roles = {role.name: role for role in db.session.scalars(select(Role))}
    if roles:
        return roles
    permissions = {code: Permission(code=code, description=text) for code, text in PERMISSIONS.items()}
    db.session.add_all(permissions.values())
    for name, codes in ROLE_PERMISSIONS.items():
        roles[name] = Role(name=name, permissions=[permissions[c] for c in codes])
        db.session.add(roles[name])
    db.session.flush()
    return roles


def make_user(role: str | None = "user", email: str | None = None, **fields) -> User:
    n = next(_sequence)
    user = User(
        email=email or f"user{n}@example.test",
        display_name=fields.pop("display_name", f"User {n}"),
        password_hash=fields.pop("password_hash", password_hash()),
        email_verified_at=fields.pop("email_verified_at", utcnow() - timedelta(days=1)),
        **fields,
    )
    if role:
        user.roles = [ensure_roles()[role]]
    db.session.add(user)
    db.session.flush()
    return user


def make_provider(**fields):
    """An enabled OpenAI-style provider with a unique slug."""
    from webapp.providers.models import Provider

    n = next(_sequence)
    provider = Provider(
        slug=fields.pop("slug", f"provider-{n}"),
        name=fields.pop("name", f"Provider {n}"),
        default_base_url=fields.pop("default_base_url", "https://api.provider.test/v1"),
        capabilities=fields.pop("capabilities", ["chat"]),
        docs_url=fields.pop("docs_url", "https://docs.provider.test"),
        **fields,
    )
    db.session.add(provider)
    db.session.flush()
    return provider


def make_provider_config(user, provider, api_key: str | None = None, **fields):
    """``user``'s config for ``provider``, with ``api_key`` sealed to it when given."""
    from webapp.providers.crypto import encrypt_api_key
    from webapp.providers.models import UserProviderConfig

    config = UserProviderConfig(user_id=user.id, provider_id=provider.id, settings={}, **fields)
    if api_key:
        encrypt_api_key(config, api_key)
    db.session.add(config)
    db.session.flush()
    return config


def make_plan(code: str | None = None, price_cents: int = 0, **fields):
    from webapp.billing.models import Plan

    n = next(_sequence)
    plan = Plan(
        code=code or f"plan{n}", name=fields.pop("name", (code or f"Plan {n}").title()), price_cents=price_cents,
        quotas=fields.pop("quotas", {"tokens": 100_000, "requests": 1_000}), **fields,
    )
    db.session.add(plan)
    db.session.flush()
    return plan


def make_subscription(user, plan, status: str = "active", days_into_period: int = 10, **fields):
    """``user``'s subscription to ``plan``, ``days_into_period`` days into a 30-day period."""
    from webapp.billing.models import UserSubscription

    start = fields.pop("current_period_start", utcnow() - timedelta(days=days_into_period))
    subscription = UserSubscription(
        user_id=user.id, plan_id=plan.id, status=status, current_period_start=start,
        current_period_end=fields.pop("current_period_end", start + timedelta(days=30)), **fields,
    )
    db.session.add(subscription)
    db.session.flush()
    if status in ("trialing", "active", "past_due"):
        user.current_subscription_id = subscription.id
        db.session.flush()
    return subscription


def make_payment(user, subscription=None, amount_cents: int = 2900, status: str = "succeeded", **fields):
    from webapp.billing.models import Payment

    payment = Payment(user_id=user.id, subscription_id=subscription.id if subscription else None,
                      amount_cents=amount_cents, status=status, description=fields.pop("description", "Plan"),
                      **fields)
    db.session.add(payment)
    db.session.flush()
    return payment


def make_usage(user, metric: str, quantity: int, occurred_at=None, subscription=None, model=None):
    """A usage record written through the metering path, so the daily rollup holds it too."""
    from webapp.billing.models import UsageRecord
    from webapp.metering.services import store_usage

    event_id = f"test-{uuid.uuid4().hex}"
    store_usage([{"event_id": event_id, "user_id": user.id, "metric": metric, "quantity": quantity,
                  "occurred_at": occurred_at or utcnow(), "model_id": model.id if model else None,
                  "subscription_id": subscription.id if subscription else None}])
    return db.session.scalar(select(UsageRecord).where(UsageRecord.event_id == event_id))


def make_ai_model(**fields):
    """A reference model (no provider unless given) with a unique key."""
    from webapp.providers.models import AIModel

    n = next(_sequence)
    model = AIModel(
        model_type=fields.pop("model_type", "reference"),
        model_key=fields.pop("model_key", f"model-{n}"),
        name=fields.pop("name", f"Model {n}"),
        **fields,
    )
    db.session.add(model)
    db.session.flush()
    return model


def make_minion(owner, model=None, xp: int = 0, **fields):
    """A minion whose xp comes from one XP award, so the ledger and the window gains hold."""
    from webapp.minions.models import Minion
    from webapp.minions.services import award_xp

    n = next(_sequence)
    minion = Minion(
        owner_user_id=owner.id, model_id=(model or make_ai_model()).id, name=fields.pop("name", f"Minion {n}"),
        xp=0, level=1, **fields,
    )
    db.session.add(minion)
    db.session.flush()
    if xp:
        award_xp(minion, xp, "quest.completed")
    return minion


def make_training_job(owner, status: str = "queued", minion=None, **fields):
    """A job of ``owner``'s with timestamps that fit its status."""
    from webapp.training.models import TrainingJob

    n = next(_sequence)
    now = utcnow()
    job = TrainingJob(
        user_id=owner.id, minion_id=minion.id if minion else None,
        base_model_id=fields.pop("base_model_id", None) or (minion.model_id if minion else make_ai_model().id),
        name=fields.pop("name", f"Job {n}"), status=status,
        queued_at=fields.pop("queued_at", now - timedelta(hours=1)),
        started_at=now - timedelta(minutes=30) if status != "queued" else None,
        finished_at=now if status in ("succeeded", "failed", "canceled") else None,
        progress=1.0 if status == "succeeded" else fields.pop("progress", 0.0),
        hyperparameters=fields.pop("hyperparameters", {"epochs": 3}),
        **fields,
    )
    db.session.add(job)
    db.session.flush()
    return job


def make_job_runner(name: str | None = None):
    """A runner and its plain token (only the hash is stored)."""
    from webapp.training.services import create_runner

    return create_runner(name or f"runner-{next(_sequence)}")


def make_metering_token(name: str | None = None):
    """A metering API service token row and its plain token (only the hash is stored)."""
    from webapp.metering.services import create_token

    return create_token(name or f"gateway-{next(_sequence)}")


def make_session(user, ip_address: str = "198.51.100.1", user_agent: str = "Test browser"):
    """A live server-side session of ``user``; the raw token is on ``user.session_token``."""
    from webapp.accounts.models import UserSession
    from webapp.accounts.sessions import start_session
    from webapp.security import hash_token

    token = start_session(user, ip_address, user_agent)
    db.session.flush()
    return db.session.scalar(select(UserSession).where(UserSession.session_token_hash == hash_token(token)))


CHAT_ROW = '{"messages": [{"role": "user", "content": "Hi %d"}, {"role": "assistant", "content": "Hello %d"}]}'


def jsonl_rows(count: int) -> bytes:
    """``count`` valid chat rows as a JSON lines file."""
    return "".join(CHAT_ROW % (n, n) + "\n" for n in range(1, count + 1)).encode()


def make_dataset(owner, rows: int = 3, content: bytes | None = None, **fields):
    """A dataset of ``owner``'s (None: a platform one) whose file really is in the artifact store."""
    from webapp.artifacts import new_key, write_stream
    from webapp.datasets.models import Dataset

    n = next(_sequence)
    data = content if content is not None else jsonl_rows(rows)
    fmt = fields.pop("format", "jsonl")
    stored = write_stream(new_key("datasets", "factory", suffix=f".{fmt}"), [data])
    name = fields.pop("name", f"Dataset {n}")
    dataset = Dataset(
        owner_user_id=owner.id if owner else None, name=name, slug=fields.pop("slug", f"dataset-{n}"),
        description=fields.pop("description", ""), visibility=fields.pop("visibility", "private"), format=fmt,
        uri=stored.uri, size_bytes=stored.size_bytes, row_count=fields.pop("row_count", rows),
        checksum=f"sha256:{stored.sha256}", tags=[], **fields,
    )
    db.session.add(dataset)
    db.session.flush()
    return dataset
