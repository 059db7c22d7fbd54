"""The main navigation, filtered by what the signed-in user may open."""
from __future__ import annotations

from flask import Flask, current_app, request, url_for
from flask_login import current_user

# (endpoint, label, permission needed or None for any signed-in user)
MAIN_NAVIGATION = [
    ("home.index", "Home", None),
    ("billing.subscription", "Subscription", None),
    ("providers.provider_list", "Providers", None),
    ("minions.minion_list", "Minions", None),
    ("datasets.dataset_list", "Datasets", None),
    ("training.job_list", "Jobs", None),
    ("minions.leaderboard", "Leaderboard", None),
    ("support.user_search", "Support", "users.read"),
    ("admin.index", "Admin", "admin.access"),
]


def navigation_items() -> list[dict]:
    if not current_user.is_authenticated:
        return []
    items = []
    for endpoint, label, permission in MAIN_NAVIGATION:
        if not has_endpoint(endpoint):
            continue
        if permission and not current_user.has_permission(permission):
            continue
        url = url_for(endpoint)
        current = request.path == url or (url != "/" and request.path.startswith(url))
        items.append({"url": url, "label": label, "current": current})
    return items


def has_endpoint(endpoint: str) -> bool:
    return endpoint in current_app.view_functions


def init_app(app: Flask) -> None:
    app.jinja_env.globals.update(navigation_items=navigation_items, has_endpoint=has_endpoint)
