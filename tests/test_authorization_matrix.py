"""Every route of the app, requested as anonymous, user, support and admin.

Each domain lists its routes in tests/<domain>/authz.py (see tests/authz.py). This
test fails when a rule of ``app.url_map`` has no Route, so a new route is covered
by itself, and when a Route names a rule that no longer exists.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlsplit

from tests.authz import ROLES, Route, World, same_for_signed_in
from tests.conftest import FreshContextClient
from tests.factories import make_session, make_user
from webapp.extensions import db

TESTS_DIR = Path(__file__).parent
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def app_routes(world: World) -> list[Route]:
    """Routes the app registers outside any domain blueprint."""
    return [Route("GET", "/static/<path:filename>", "/static/app.css", same_for_signed_in("ok", "ok"))]


def route_modules() -> list:
    paths = sorted(TESTS_DIR.glob("*/authz.py")) + sorted(TESTS_DIR.glob("*/*/authz.py"))
    names = [".".join(("tests", *path.relative_to(TESTS_DIR).with_suffix("").parts)) for path in paths]
    return [importlib.import_module(name) for name in names]


def outcome(response) -> int | str:
    """ "login", "ok" or the status code, as tests/authz.py defines them."""
    if response.status_code == 401 and urlsplit(response.headers.get("HX-Redirect", "")).path == "/login":
        return "login"
    if 300 <= response.status_code < 400:
        return "login" if urlsplit(response.headers["Location"]).path == "/login" else "ok"
    if 200 <= response.status_code < 300:
        return "ok"
    return response.status_code


def rules_of(app) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - IGNORED_METHODS
    }


def request_as(app, token: str | None, route: Route):
    client = FreshContextClient(app, app.response_class, use_cookies=True)
    if token:
        with client.session_transaction() as session:
            session["_user_id"] = token
            session["_fresh"] = True
    return client.open(route.url, method=route.method, data=route.data or None, json=route.json,
                       headers=route.headers)


def test_every_route_answers_each_role_as_expected(app, db_session):
    world = World(user=make_user("user"), support=make_user("support"), admin=make_user("admin"),
                  other=make_user("user"))
    routes = app_routes(world) + [route for module in route_modules() for route in module.routes(world)]
    tokens = {"anonymous": None}
    for role in ROLES[1:]:
        user = getattr(world, role)
        make_session(user, "127.0.0.1", "authorization matrix")
        tokens[role] = user.session_token

    covered = {(route.method, route.rule) for route in routes}
    registered = rules_of(app)
    missing = sorted(registered - covered)
    unknown = sorted(covered - registered)
    assert not missing, f"routes without a row in any tests/*/authz.py: {missing}"
    assert not unknown, f"authz rows for rules the app does not have: {unknown}"

    connection = db._app_engines[app][None]
    wrong = []
    for route in routes:
        for role in ROLES:
            # Each request's writes are undone, so no request sees another's effects.
            savepoint = connection.begin_nested()
            try:
                got = outcome(request_as(app, tokens[role], route))
            finally:
                savepoint.rollback()
            if got != route.expect[role]:
                wrong.append(f"{route.method} {route.url} as {role}: expected {route.expect[role]!r}, got {got!r}")
    assert not wrong, "\n".join(wrong)
