"""Provider catalogue, users' provider configs, and the unified model registry."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, LargeBinary, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk
from webapp.extensions import db

API_STYLES = ("openai", "anthropic", "google", "custom")
MODEL_TYPES = ("external", "reference", "custom")
MODEL_STAGES = ("none", "staging", "production", "archived")


class Provider(TimestampMixin, db.Model):
    """Static facts about an LLM provider (the review's provider_capabilities)."""

    __tablename__ = "providers"
    __table_args__ = (choice_check("api_style", API_STYLES),)

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    api_style: Mapped[str] = mapped_column(String(16), default="openai", server_default="openai")
    default_base_url: Mapped[str] = mapped_column(String(500))
    capabilities: Mapped[list[Any]] = mapped_column(default=list)
    docs_url: Mapped[str | None] = mapped_column(String(500))
    is_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())

    def __str__(self) -> str:
        return self.name


class UserProviderConfig(TimestampMixin, db.Model):
    """A user's own credentials and overrides for one provider."""

    __tablename__ = "user_provider_configs"
    __table_args__ = (db.UniqueConstraint("user_id", "provider_id"),)

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    provider_id: Mapped[int] = mapped_column(fk("providers.id", "CASCADE"), index=True)
    # Fernet ciphertext bound to (user_id, provider_id); never the key itself.
    api_key_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    api_key_last4: Mapped[str | None] = mapped_column(String(4))
    base_url: Mapped[str | None] = mapped_column(String(500))
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_verified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    user = relationship("User", foreign_keys=[user_id])
    provider: Mapped[Provider] = relationship()


class AIModel(TimestampMixin, db.Model):
    """One table for external, reference and custom models (review item 1)."""

    __tablename__ = "models"
    __table_args__ = (
        choice_check("model_type", MODEL_TYPES),
        db.UniqueConstraint("provider_id", "model_key"),
        CheckConstraint(
            "model_type != 'custom' OR owner_user_id IS NOT NULL", name="custom_has_owner"
        ),
        CheckConstraint("context_window IS NULL OR context_window > 0", name="context_window_positive"),
    )

    model_type: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[int | None] = mapped_column(fk("providers.id", "RESTRICT"), index=True)
    owner_user_id: Mapped[int | None] = mapped_column(fk("users.id", "CASCADE"), index=True)
    model_key: Mapped[str] = mapped_column(String(120))
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    capabilities: Mapped[list[Any]] = mapped_column(default=list)
    context_window: Mapped[int | None]
    pricing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())

    provider: Mapped[Provider | None] = relationship()
    owner = relationship("User", foreign_keys=[owner_user_id])

    def __str__(self) -> str:
        return self.name


class ModelVersion(TimestampMixin, db.Model):
    """The versioned model registry with lineage (replaces model_profiles)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        db.UniqueConstraint("model_id", "version"),
        choice_check("stage", MODEL_STAGES),
    )

    model_id: Mapped[int] = mapped_column(fk("models.id", "CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    parent_version_id: Mapped[int | None] = mapped_column(
        fk("model_versions.id", "SET NULL"), index=True
    )
    training_job_id: Mapped[int | None] = mapped_column(
        fk("training_jobs.id", "SET NULL", use_alter=True), index=True
    )
    stage: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    artifact_uri: Mapped[str | None] = mapped_column(String(500))
    # A model fine-tuned at a provider: its id there (what requests name as "model").
    external_model_id: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by_id: Mapped[int | None] = mapped_column(fk("users.id", "SET NULL"), index=True)

    model: Mapped[AIModel] = relationship()
    parent_version: Mapped[ModelVersion | None] = relationship(remote_side="ModelVersion.id")
    created_by = relationship("User", foreign_keys=[created_by_id])
    training_job = relationship("TrainingJob", foreign_keys=[training_job_id])

    def __str__(self) -> str:
        return f"{self.model.name if self.model else self.model_id} {self.version}"
