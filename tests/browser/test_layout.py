"""The base layout in a real browser: HTMX without the CDN, the 503 banner that keeps what was typed,
keyboard and screen-reader basics, and a narrow screen."""
import contextlib
import re

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.helpers import sign_in
from tests.factories import make_training_job
from webapp.accounts.models import User
from webapp.extensions import db
from webapp.security import HTMX_VERSION

pytestmark = pytest.mark.browser

SHOTS = "test-artifacts"


@contextlib.contextmanager
def database_unreachable(app):
    """Point the live server's requests at a database that refuses connections, then restore it."""
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        broken_url = url.set(database="/nonexistent-directory/console.sqlite3")
    else:
        broken_url = url.set(host="127.0.0.1", port=1)  # nothing listens on port 1
    broken = sa.create_engine(broken_url, connect_args={"connect_timeout": 2} if url.get_backend_name() != "sqlite"
                              else {})
    engines = db._app_engines[app]
    working = engines[None]
    engines[None] = broken
    try:
        yield
    finally:
        engines[None] = working
        broken.dispose()


def test_htmx_comes_from_static_when_the_cdn_is_unreachable(live_server, page):
    blocked, vendored = [], []
    page.route("https://cdn.jsdelivr.net/**", lambda route: (blocked.append(route.request.url), route.abort()))
    page.on("request", lambda request: vendored.append(request.url) if "/static/vendor/htmx" in request.url else None)
    sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}/account/subscription")

    assert blocked, "the page asked the CDN first"
    assert vendored and vendored[-1].endswith(f"/static/vendor/htmx-{HTMX_VERSION}.min.js")
    assert page.evaluate("window.htmx && window.htmx.version") == HTMX_VERSION
    page.evaluate("window.noFullReload = true")
    page.get_by_role("link", name="Downgrade to Pro").click()
    expect(page.locator("#plan-change-dialog").get_by_role("button", name="Schedule the move")).to_be_visible()
    assert page.evaluate("window.noFullReload") is True, "the confirmation came through HTMX"


def test_an_htmx_post_that_meets_a_dead_database_shows_a_banner_and_keeps_the_input(live_server, page, backend):
    sign_in(page, live_server.url, "ada@demo.test")
    page.goto(f"{live_server.url}/account/subscription")
    page.get_by_role("link", name="Upgrade to Team").click()
    dialog = page.locator("#plan-change-dialog")
    dialog.get_by_label("Invoice reference (optional)").fill("PO-4711")
    confirm = dialog.get_by_role("button", name=re.compile("Confirm and pay"))

    with database_unreachable(live_server.app):
        with page.expect_response(re.compile(r"/account/subscription/change$")) as answer:
            confirm.click()
        banner = page.locator("#error-banner")
        expect(banner).to_be_visible()
    assert answer.value.status == 503 and answer.value.headers["retry-after"] == "30"
    expect(banner).to_contain_text("Temporarily unavailable")
    expect(banner).to_contain_text("What you typed is still in the form")
    expect(dialog.get_by_label("Invoice reference (optional)")).to_have_value("PO-4711")
    page.screenshot(path=f"{SHOTS}/layout-503-banner-{backend}.png", full_page=True)

    confirm.click()  # the database is back: the same form goes through
    expect(page.locator("#billing-notice")).to_contain_text("You are now on the Team plan")
    expect(banner).to_be_hidden()
    expect(page.locator("#payment-history tbody tr").first).to_contain_text("ref. PO-4711")


def test_a_page_opened_while_the_database_is_down_answers_503_with_retry_after(live_server, page, backend):
    sign_in(page, live_server.url, "grace@demo.test")
    with database_unreachable(live_server.app):
        response = page.goto(f"{live_server.url}/account/subscription")
    assert response.status == 503 and response.headers["retry-after"] == "30"
    expect(page.get_by_role("heading", level=1)).to_contain_text("Temporarily unavailable")
    page.screenshot(path=f"{SHOTS}/layout-503-page-{backend}.png", full_page=True)
    page.get_by_role("link", name="Try again").click()
    expect(page.get_by_role("heading", name="Your subscription", level=1)).to_be_visible()


HEADINGS_IN_ORDER = """() => {
  const levels = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => Number(h.tagName[1]));
  return levels.length > 0 && levels[0] === 1 && levels.filter(l => l === 1).length === 1
    && levels.every((level, i) => i === 0 || level <= levels[i - 1] + 1);
}"""
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map(el => el.outerHTML)"""


@pytest.mark.parametrize("path", ["/", "/account/subscription", "/login"])
def test_pages_have_ordered_headings_labelled_controls_and_a_skip_link_first(live_server, page, path):
    if path != "/login":
        sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}{path}")
    assert page.evaluate(HEADINGS_IN_ORDER), "one h1, then no skipped heading levels"
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    if path == "/login":
        # The sign-in form takes focus at once; the skip link is for pages that start with navigation.
        assert page.evaluate("document.activeElement.name") == "email"
        return
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_home_summarises_plan_usage_jobs_and_best_minion(live_server, page, backend):
    with live_server.app.app_context():
        # The demo's jobs are history: a runner holds this one.
        grace = db.session.scalars(sa.select(User).filter_by(email="grace@demo.test")).one()
        make_training_job(grace, status="running", name="Bug Hunter v2", progress=0.3)
        db.session.commit()
    sign_in(page, live_server.url, "grace@demo.test")
    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("heading", name="Your plan")).to_be_visible()
    expect(page.locator("section", has=page.get_by_role("heading", name="Your plan"))).to_contain_text("Team")
    expect(page.get_by_role("progressbar").first).to_be_visible()
    expect(page.locator("section", has=page.get_by_role("heading", name="Running jobs"))).to_contain_text(
        "Bug Hunter v2")
    expect(page.locator("section", has=page.get_by_role("heading", name="Best minion"))).to_contain_text("Level")
    page.screenshot(path=f"{SHOTS}/home-{backend}.png", full_page=True)


def test_a_narrow_screen_has_no_horizontal_scrolling(live_server, page, backend):
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, live_server.url, "grace@demo.test")
    for path, name in (("/", "home"), ("/account/subscription", "subscription")):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        page.screenshot(path=f"{SHOTS}/layout-narrow-{name}-{backend}.png", full_page=True)
