from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from webapp.accounts.access import login_required, verified_email_required
from webapp.extensions import db
from webapp.htmx import is_htmx, render_page_or_block
from webapp.providers import bp
from webapp.providers.client import MAX_TIMEOUT_SECONDS
from webapp.providers.forms import ApiKeyForm, ProviderSettingsForm
from webapp.providers.services import (
    ProviderCard,
    config_for,
    delete_api_key,
    enabled_provider,
    normalise_base_url,
    provider_cards,
    save_api_key,
    update_settings,
    verify_connection,
)


def key_prefix(slug: str) -> str:
    """Field names and ids unique per card and per form (each card holds two forms)."""
    return f"{slug}-key"


def settings_prefix(slug: str) -> str:
    return f"{slug}-settings"


def blank_forms(card: ProviderCard) -> tuple[ApiKeyForm, ProviderSettingsForm]:
    """The card's forms showing what is stored (never the key), ignoring any posted data."""
    config = card.config
    # A provider without a key is not in use: its box is not ticked until a key is stored.
    has_key = config is not None and config.api_key_last4 is not None
    settings = {"base_url": config.base_url if config else "", "is_enabled": has_key and config.is_enabled}
    return (
        ApiKeyForm(formdata=None, prefix=key_prefix(card.provider.slug)),
        ProviderSettingsForm(formdata=None, prefix=settings_prefix(card.provider.slug), data=settings),
    )


def card_entry(card: ProviderCard, outcome=None, key_form=None, settings_form=None) -> tuple:
    """(card, key form, settings form); posted forms (with their errors) replace the blank ones."""
    blank_key_form, blank_settings_form = blank_forms(card)
    card.outcome = outcome
    return card, key_form or blank_key_form, settings_form or blank_settings_form


def card_entries(slug: str | None = None, **changed) -> list[tuple]:
    """An entry per enabled provider; the ``slug`` card carries the outcome or posted forms."""
    return [card_entry(card, **changed) if card.provider.slug == slug else card_entry(card)
            for card in provider_cards(current_user)]


def card_response(slug: str, outcome: tuple[str, str] | None = None, status: int = 200, **posted_forms):
    """HTMX swaps the one card in place; without HTMX, back to the page (or the page with errors)."""
    if is_htmx():
        card = next(card for card in provider_cards(current_user) if card.provider.slug == slug)
        card, key_form, settings_form = card_entry(card, outcome, **posted_forms)
        return render_template("providers/_card.html", card=card, key_form=key_form, settings_form=settings_form), status
    if status == 422:
        entries = card_entries(slug, outcome=outcome, **posted_forms)
        return render_page_or_block("providers/provider_list.html", "provider_cards", status, entries=entries)
    if outcome:
        flash(outcome[1], outcome[0])
    return redirect(url_for("providers.provider_list"))


@bp.get("")
@login_required
def provider_list():
    return render_page_or_block("providers/provider_list.html", "provider_cards", entries=card_entries())


@bp.post("/<slug>/key")
@login_required
def provider_key_save(slug: str):
    provider = enabled_provider(slug) or abort(404)
    form = ApiKeyForm(prefix=key_prefix(slug))
    if not form.validate_on_submit():
        return card_response(slug, status=422, key_form=form)
    config = save_api_key(current_user, provider, form.api_key.data)
    db.session.commit()
    return card_response(slug, ("success", f"Key ending in {config.api_key_last4} saved. Test the connection to verify it."))


@bp.post("/<slug>/settings")
@login_required
def provider_settings_save(slug: str):
    provider = enabled_provider(slug) or abort(404)
    form = ProviderSettingsForm(prefix=settings_prefix(slug))
    if not form.validate_on_submit():
        return card_response(slug, status=422, settings_form=form)
    update_settings(current_user, provider, normalise_base_url(form.base_url.data), form.is_enabled.data)
    db.session.commit()
    return card_response(slug, ("success", f"{provider.name} settings saved."))


@bp.post("/configs/<int:config_id>/test")
@login_required
@verified_email_required
def provider_test(config_id: int):
    config = config_for(current_user, config_id) or abort(404)
    if config.api_key_ciphertext is None:
        return card_response(config.provider.slug, ("error", "Add an API key first."))
    timeout = min(current_app.config.get("PROVIDER_TEST_TIMEOUT_SECONDS", MAX_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS)
    outcome = verify_connection(config, timeout)
    db.session.commit()
    return card_response(config.provider.slug, outcome)


@bp.post("/configs/<int:config_id>/key/delete")
@login_required
def provider_key_delete(config_id: int):
    config = config_for(current_user, config_id) or abort(404)
    if config.api_key_ciphertext is None:
        return card_response(config.provider.slug, ("info", "No key is stored."))
    delete_api_key(config)
    db.session.commit()
    return card_response(config.provider.slug, ("success", f"{config.provider.name} key deleted."))
