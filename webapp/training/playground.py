"""The playground on the minion page: the owner asks a minion's current model version a question and sees its answer.

An external or fine-tuned model answers through its provider's OpenAI-compatible chat completions,
with the owner's key, through the one ``openai_client`` (checked egress, one timeout, no redirects);
its token counts come from the answer's ``usage``. An internal model's artifact is loaded by the
internal trainer's own loader and answers on the console's CPU; its tokens are counted here. Every
answered call is recorded through the metering path, so the meters move at once.
"""
from __future__ import annotations

import re
import struct
import uuid
from dataclasses import dataclass

import openai
from flask import current_app
from sqlalchemy import select

from webapp import quotas
from webapp.accounts.models import User
from webapp.artifacts import is_stored_here
from webapp.database import write_transaction
from webapp.db import utcnow
from webapp.extensions import db
# A module import: metering's services may be mid-import (through quotas) when this runs.
from webapp.metering import services as metering
from webapp.minions.models import Minion
from webapp.providers.crypto import ApiKeyUnreadable, decrypt_api_key
from webapp.providers.egress import EgressRefused
from webapp.providers.models import AIModel, ModelVersion, UserProviderConfig
from webapp.providers.openai_api import openai_client
from webapp.providers.services import redact_secret
from webapp.training.external import describe
from webapp.training.internal import load_model

MAX_PROMPT_CHARS = 4_000
MAX_ANSWER_CHARS = 20_000
# Words and punctuation marks: how the playground counts an internal model's tokens.
TOKEN = re.compile(r"\w+|[^\w\s]")


class PlaygroundRefused(Exception):
    """The call cannot be made, or failed; the message says why in words for the owner (never the key)."""


@dataclass(frozen=True)
class Target:
    """What answers for the minion: a provider's model (by the name the provider knows) or an internal artifact."""

    label: str
    model: AIModel
    provider_model: str | None = None
    artifact_uri: str | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    label: str
    input_tokens: int
    output_tokens: int


def target_for(minion: Minion) -> Target:
    """The minion's current version, or its external base model; PlaygroundRefused when nothing can answer."""
    version: ModelVersion | None = minion.model_version
    if version is not None and version.external_model_id:
        return Target(f"{version.model.name} {version.version}", version.model, provider_model=version.external_model_id)
    job = version.training_job if version is not None else None
    if (version is not None and version.artifact_uri and job is not None and job.job_type == "internal"
            and is_stored_here(version.artifact_uri)):
        return Target(f"{version.model.name} {version.version}", version.model, artifact_uri=version.artifact_uri)
    if minion.model.model_type == "external":
        return Target(minion.model.name, minion.model, provider_model=minion.model.model_key)
    raise PlaygroundRefused(f"{minion.name} has no trained version to answer with yet: "
                            "train it on a dataset first, then try it here.")


def ask(user: User, minion: Minion, prompt: str) -> Answer:
    """Answer ``prompt`` with ``minion`` for its owner and record the call's usage; PlaygroundRefused says why not.

    Commits what the request did so far before the model is called, so no transaction (and no
    row lock) is held while a provider thinks; the usage is then written in a transaction of its own.
    """
    if user.email_verified_at is None:
        raise PlaygroundRefused("Confirm your email address before trying a minion: calls use your provider key.")
    target = target_for(minion)
    for key in ("requests", "tokens"):
        quotas.check(user, key)  # raises QuotaExceeded where the plan blocks at its limit
    config = provider_config(user, target.model) if target.provider_model else None
    api_key = read_key(config) if config is not None else None
    db.session.commit()  # the key's audit row; nothing stays open during the call
    if target.artifact_uri:
        answer = internal_answer(target, prompt)
    else:
        answer = provider_answer(target, config, api_key, prompt)
    user_id, model_id, now = user.id, target.model.id, utcnow()
    call = uuid.uuid4().hex
    write_transaction(lambda: metering.record_usage([
        metering.UsageEvent(f"playground-{call}-{metric}", user_id, metric, quantity, now, model_id)
        for metric, quantity in (("requests", 1), ("input_tokens", answer.input_tokens),
                                 ("output_tokens", answer.output_tokens))
    ], now))
    return answer


def provider_config(user: User, model: AIModel) -> UserProviderConfig:
    provider = model.provider
    config = db.session.scalar(select(UserProviderConfig).where(
        UserProviderConfig.user_id == user.id, UserProviderConfig.provider_id == model.provider_id))
    if config is None or config.api_key_ciphertext is None:
        raise PlaygroundRefused(f"Add your {provider.name} API key on the Providers page first.")
    if not config.is_enabled or not provider.is_enabled:
        raise PlaygroundRefused(f"{provider.name} is disabled for this account; enable it on the Providers page.")
    return config


def read_key(config: UserProviderConfig) -> str:
    try:
        return decrypt_api_key(config, purpose="playground")
    except ApiKeyUnreadable as error:
        raise PlaygroundRefused(f"The stored {config.provider.name} key cannot be used ({error}); "
                                "replace it on the Providers page.") from None


def provider_answer(target: Target, config: UserProviderConfig, api_key: str, prompt: str) -> Answer:
    """One chat completion at the provider; its ``usage`` gives the token counts."""
    provider_name = config.provider.name
    try:
        with openai_client(config, api_key, current_app.config["PROVIDER_API_TIMEOUT_SECONDS"]) as client:
            completion = client.chat.completions.create(
                model=target.provider_model, messages=[{"role": "user", "content": prompt}],
                max_tokens=current_app.config["PLAYGROUND_MAX_OUTPUT_TOKENS"])
    except EgressRefused as error:
        raise PlaygroundRefused(f"Cannot connect to {provider_name}: {error}.") from None
    except openai.OpenAIError as error:
        # "from None": the original exception's text may echo the key into a logged traceback.
        raise PlaygroundRefused(redact_secret(describe(error, provider_name), api_key)[:500]) from None
    if not completion.choices or completion.usage is None:
        raise PlaygroundRefused(f"{provider_name} answered without a message or without its token usage.")
    text = completion.choices[0].message.content or ""
    return Answer(redact_secret(text, api_key)[:MAX_ANSWER_CHARS], target.label,
                  int(completion.usage.prompt_tokens), int(completion.usage.completion_tokens))


def internal_answer(target: Target, prompt: str) -> Answer:
    """The internal model's answer: the completion it ranks first for ``prompt``."""
    try:
        text = str(load_model(target.artifact_uri).predict([prompt])[0])
    # A truncated artifact fails while unpickling: EOFError when empty, struct.error when cut mid-header.
    except (OSError, ValueError, EOFError, struct.error) as error:
        raise PlaygroundRefused(f"The trained model could not be loaded ({error.__class__.__name__}); "
                                "train the minion again.") from None
    return Answer(text, target.label, count_tokens(prompt), count_tokens(text))


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))
