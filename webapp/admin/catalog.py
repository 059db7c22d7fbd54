"""Providers and models: the provider catalogue, users' provider configs, models and their versions."""
from __future__ import annotations

from sqlalchemy.orm import joinedload
from wtforms import PasswordField

from webapp.accounts.audit import record
from webapp.admin.base import USER_LOOKUP, SecureModelView, admin_action, choice_filter, choices, lookup
from webapp.extensions import db
from webapp.providers.crypto import encrypt_api_key
from webapp.providers.models import (
    API_STYLES, MODEL_STAGES, MODEL_TYPES, AIModel, ModelVersion, Provider, UserProviderConfig,
)

CATEGORY = "Providers and models"
MODEL_LOOKUP = lookup("name", "model_key")


class ProvidersView(SecureModelView):
    read_permission = "providers.read"
    write_permission = "providers.manage"


class ModelsView(SecureModelView):
    read_permission = "models.read"
    write_permission = "models.write"


class ProviderView(ProvidersView):
    column_list = ("id", "slug", "name", "api_style", "default_base_url", "is_enabled", "created_at")
    column_searchable_list = ("slug", "name")
    column_filters = ("is_enabled", choice_filter(Provider.api_style, "API style", API_STYLES), "created_at")
    column_default_sort = "name"
    form_columns = ("slug", "name", "api_style", "default_base_url", "capabilities", "docs_url", "is_enabled")
    form_choices = {"api_style": choices(API_STYLES)}


class ProviderConfigView(ProvidersView):
    """A user's credentials: the API key is entered write-only and shown as its last 4 characters."""

    column_list = ("id", "user", "provider", "api_key_last4", "base_url", "is_enabled", "last_verified_at")
    column_labels = {"api_key_last4": "API key"}
    column_formatters = {"api_key_last4": lambda view, context, model, name: (
        f"…{model.api_key_last4}" if model.api_key_last4 else "none")}
    column_searchable_list = ("user.email", "provider.name")
    column_filters = ("is_enabled", "last_verified_at", "provider.name")
    form_columns = ("user", "provider", "api_key", "base_url", "settings", "is_enabled")
    form_extra_fields = {"api_key": PasswordField(
        "API key", description="Write-only: leave blank to keep the stored key. Only its last 4 characters are shown.")}
    form_ajax_refs = {"user": USER_LOOKUP, "provider": lookup("name", "slug")}
    maintained = ("api_key_last4", "last_verified_at", "last_error")
    eager = (joinedload(UserProviderConfig.user), joinedload(UserProviderConfig.provider))

    def on_model_change(self, form, model: UserProviderConfig, is_created: bool) -> None:
        if form.api_key.data:
            # The key is sealed to (user_id, provider_id), which the flush fills in from the selects.
            db.session.flush()
            encrypt_api_key(model, form.api_key.data)


class AIModelView(ModelsView):
    column_list = ("id", "name", "model_type", "provider", "owner", "model_key", "context_window", "is_active")
    column_searchable_list = ("name", "model_key")
    column_filters = (choice_filter(AIModel.model_type, "Type", MODEL_TYPES), "is_active", "provider.name",
                      "owner.email", "created_at")
    column_default_sort = "name"
    form_columns = ("model_type", "provider", "owner", "model_key", "name", "description", "parameters",
                    "capabilities", "context_window", "pricing", "avatar_url", "tags", "is_active")
    form_choices = {"model_type": choices(MODEL_TYPES)}
    form_ajax_refs = {"provider": lookup("name", "slug"), "owner": USER_LOOKUP}
    eager = (joinedload(AIModel.provider), joinedload(AIModel.owner))


class ModelVersionView(ModelsView):
    column_list = ("id", "model", "version", "stage", "parent_version", "training_job", "created_by", "created_at")
    column_searchable_list = ("version", "model.name")
    column_filters = (choice_filter(ModelVersion.stage, "Stage", MODEL_STAGES), "model.name", "created_at")
    form_columns = ("model", "version", "parent_version", "training_job", "stage", "artifact_uri", "metrics",
                    "created_by")
    form_choices = {"stage": choices(MODEL_STAGES)}
    form_ajax_refs = {"model": MODEL_LOOKUP, "parent_version": lookup("version"),
                      "training_job": lookup("name"), "created_by": USER_LOOKUP}
    eager = (joinedload(ModelVersion.model), joinedload(ModelVersion.parent_version).joinedload(ModelVersion.model),
             joinedload(ModelVersion.training_job), joinedload(ModelVersion.created_by))

    @admin_action("archive", "Archive", "models.write", "Archive the selected model versions?")
    def action_archive(self, ids: list[str]) -> None:
        def archive(version: ModelVersion) -> bool:
            if version.stage == "archived":
                return False
            record("admin.archive", version, {"stage": [version.stage, "archived"]})
            version.stage = "archived"
            return True

        self.run_bulk(ids, archive, "{count} versions archived ({skipped} already were).")


def views() -> list[SecureModelView]:
    return [
        ProviderView(Provider, "admin_providers", "Providers", CATEGORY),
        ProviderConfigView(UserProviderConfig, "admin_user_provider_configs", "Provider configs", CATEGORY),
        AIModelView(AIModel, "admin_models", "Models", CATEGORY),
        ModelVersionView(ModelVersion, "admin_model_versions", "Model versions", CATEGORY),
    ]
