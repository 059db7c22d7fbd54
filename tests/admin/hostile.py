"""Hostile walk: each admin list's named filters (read by iterating the query string), its page keys and
each create form's fields."""
from __future__ import annotations

from flask import current_app

from tests.authz import World
from tests.hostile import Fields


def extra_fields(world: World) -> dict[tuple[str, str], Fields]:
    from webapp.admin.base import SecureModelView
    from webapp.admin.keyset import AFTER, BEFORE

    extra = {}
    for view in current_app.extensions["admin"][0]._views:
        if isinstance(view, SecureModelView):
            filters = tuple(f"flt{position}_{key}" for position, key in enumerate(view._filter_args or {}))
            for rule in (f"{view.url}/", f"{view.url}/export/<export_type>/"):
                extra[("GET", rule)] = Fields(query=("page", "page_size", "sort", "desc", "search", AFTER, BEFORE) + filters)
            extra[("GET", f"{view.url}/ajax/lookup/")] = Fields(query=("name", "query", "offset", "limit"))
            if view.allow_create:
                extra[("POST", f"{view.url}/new/")] = Fields(form=tuple(view._create_form_class()._fields))
    return extra
