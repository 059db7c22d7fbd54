"""The base layout and error pages without a browser: pinned HTMX, CSRF header, navigation by role, 4xx/5xx pages."""
from __future__ import annotations

import base64
import hashlib
import os
import re

import sqlalchemy as sa

from tests.conftest import login
from tests.factories import make_user
from webapp.extensions import db
from webapp.security import HTMX_CDN_URL, HTMX_SRI, HTMX_VERSION

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "static")


def test_htmx_is_an_exact_2_0_x_version_whose_vendored_copy_matches_the_sri_hash():
    assert re.fullmatch(r"2\.0\.\d+", HTMX_VERSION) and f"htmx.org@{HTMX_VERSION}/" in HTMX_CDN_URL
    with open(os.path.join(STATIC, "vendor", f"htmx-{HTMX_VERSION}.min.js"), "rb") as vendored:
        digest = base64.b64encode(hashlib.sha384(vendored.read()).digest()).decode()
    assert HTMX_SRI == f"sha384-{digest}"


def test_layout_loads_htmx_from_the_cdn_with_sri_then_the_fallback_and_sends_the_csrf_header(client, db_session):
    login(client, make_user())
    html = client.get("/").get_data(as_text=True)
    assert f'<script src="{HTMX_CDN_URL}" integrity="{HTMX_SRI}" crossorigin="anonymous"></script>' in html
    assert html.index(HTMX_CDN_URL) < html.index("htmx-fallback.js")
    assert f'data-src="/static/vendor/htmx-{HTMX_VERSION}.min.js"' in html
    assert re.search(r'<body hx-headers=\'\{"X-CSRFToken": "[^"]+"\}\'', html)
    assert 'id="global-loading"' in html and 'role="alert"' in html and 'href="#main"' in html


def test_navigation_follows_the_role(client, db_session):
    login(client, make_user())
    user_nav = client.get("/").get_data(as_text=True)
    assert 'href="/account/subscription"' in user_nav and 'href="/admin/"' not in user_nav
    client.post("/logout")
    login(client, make_user(role="admin"))
    assert 'href="/admin/"' in client.get("/").get_data(as_text=True)


def test_error_pages_are_full_pages_and_htmx_gets_a_banner(client, db_session):
    login(client, make_user())
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "<h1" in missing.get_data(as_text=True)
    assert client.get("/billing/users/1/subscription").status_code == 403
    banner = client.get("/no-such-page", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert banner.startswith('<div class="banner banner-error" role="alert" data-error-code="404">')


def test_an_unreachable_database_answers_503_with_retry_after(app, client, db_session, tmp_path):
    user = make_user()
    login(client, user)
    engines = db._app_engines[app]
    working = engines[None]
    engines[None] = sa.create_engine(f"sqlite:///{tmp_path}/missing-dir/db.sqlite3")
    try:
        page = client.get("/account/subscription")
        fragment = client.post("/account/subscription/cancel", headers={"HX-Request": "true"})
    finally:
        engines[None].dispose()
        engines[None] = working
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert "Temporarily unavailable" in page.get_data(as_text=True)
    assert fragment.status_code == 503 and 'data-error-code="503"' in fragment.get_data(as_text=True)
    assert "What you typed is still in the form" in fragment.get_data(as_text=True)
