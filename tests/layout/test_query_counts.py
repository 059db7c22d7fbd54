"""Every self-service page in at most four queries and its HTMX rendering in at most three, every admin
details page in at most three (its history is a fragment of its own), for a signed-in user on the demo
data (tests/browser/pages.py lists the pages). The signed-in session, user, permissions and dunning
banner are one of those queries."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.browser.pages import Demo, admin_pages, console_pages
from tests.conftest import QueryCounter, app_of_its_own, login
from webapp.extensions import db
from webapp.seed.demo import seed_demo

PAGE_QUERIES = 4
FRAGMENT_QUERIES = 3
DETAILS_QUERIES = 3


@pytest.fixture(scope="module")
def demo_app(backend, tmp_path_factory):
    """An app of its own with the demo data committed, and the (rule, url) of each page per role."""
    with app_of_its_own(backend, tmp_path_factory.mktemp(f"counts-{backend}"), "_counts") as app:
        with app.app_context():
            seed_demo(app.config["DEMO_PASSWORD"])
            pages = {**console_pages(Demo()), **admin_pages(app)}
        yield app, pages


def queries_per_page(app, email: str, visits: list[tuple[str, str]], headers: dict) -> dict[tuple[str, str], int]:
    client = app.test_client()
    login(client, email, app.config["DEMO_PASSWORD"])
    with app.app_context():
        engine = db.engine
    counts = {}
    for rule, url in visits:
        client.get(url, headers=headers)  # once first, so the once-a-minute touch of the session is not counted
        counter = QueryCounter()
        sa.event.listen(engine, "before_cursor_execute", counter)
        try:
            response = client.get(url, headers=headers)
        finally:
            sa.event.remove(engine, "before_cursor_execute", counter)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        counts[rule, url] = counter.count
    return counts


def over_budget(counts: dict[tuple[str, str], int], budget: int) -> dict[str, int]:
    return {url: count for (_rule, url), count in counts.items() if count > budget}


@pytest.mark.parametrize(("headers", "budget"), [({}, PAGE_QUERIES), ({"HX-Request": "true"}, FRAGMENT_QUERIES)],
                         ids=["page", "fragment"])
def test_every_self_service_page_runs_a_few_queries(demo_app, headers, budget):
    app, pages = demo_app
    visits = [(rule, visit.url) for rule, visits in pages.items() for visit in visits
              if visit.role == "user" and not rule.startswith("/admin/")]
    counts = queries_per_page(app, "grace@demo.test", visits, headers)
    assert not over_budget(counts, budget), counts


def test_every_admin_details_page_runs_a_few_queries_and_its_history_is_a_fragment(demo_app):
    app, pages = demo_app
    details = [(rule, visit.url) for rule, visits in pages.items() if rule.endswith("/details/") for visit in visits]
    histories = [(rule.replace("/details/", "/history/"), url.replace("/details/", "/history/"))
                 for rule, url in details]
    counts = queries_per_page(app, "admin@demo.test", details, {})
    assert not over_budget(counts, DETAILS_QUERIES), counts
    history_counts = queries_per_page(app, "admin@demo.test", histories, {"HX-Request": "true"})
    assert not over_budget(history_counts, FRAGMENT_QUERIES), history_counts
