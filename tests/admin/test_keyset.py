"""Keyset paging of the admin's lists: "next" and "previous" give exactly the rows the page numbers give."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_minion, make_payment, make_usage, make_user
from webapp.db import utcnow

NEXT = re.compile(r'<a class="page-link" href="([^"]+)">&gt;</a>')
PREVIOUS = re.compile(r'<a class="page-link" href="([^"]+)">&lt;</a>')
PAGES = 3
PAGE_SIZE = 20


def add_rows(table: str, count: int) -> None:
    """``count`` rows of ``table``, in runs that share their sort value, so only id tells them apart."""
    when = utcnow() - timedelta(days=1)
    for index in range(count):
        moment = when + timedelta(minutes=index // 4)
        if table == "users":
            make_user(created_at=moment)
        elif table == "usage_records":
            make_usage(make_user(), "requests", 1, occurred_at=moment)
        elif table == "payments":
            make_payment(make_user(), created_at=moment)
        else:
            make_minion(make_user(), created_at=moment)


def page(client, url: str) -> tuple[list[int], str]:
    """The ids of the page's rows, from their details links, and the page."""
    response = client.get(url)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    table = url.split("/")[2]
    return [int(key) for key in re.findall(rf"/admin/{table}/details/\?id=(\d+)", body)], body


def link(pattern: re.Pattern, body: str) -> str:
    return html.unescape(pattern.search(body).group(1))


@pytest.mark.parametrize("url", ["/admin/users/", "/admin/usage_records/", "/admin/payments/", "/admin/minions/",
                                 "/admin/usage_records/?flt0_metric_equals=requests", "/admin/users/?sort=0"])
def test_next_and_previous_walk_the_rows_the_page_numbers_give(admin_client, url):
    table = url.split("/")[2]
    add_rows(table, PAGE_SIZE * PAGES - 7)
    separator = "&" if "?" in url else "?"
    by_number = [page(admin_client, f"{url}{separator}page={number}")[0] for number in range(PAGES)]
    assert sum(map(len, by_number)) >= PAGE_SIZE * PAGES - 7 and all(by_number)

    ids, body = page(admin_client, url)
    walked = [ids]
    for number in range(1, PAGES):
        url_next = link(NEXT, body)
        assert "after=" in url_next and f"page={number}" in url_next
        ids, body = page(admin_client, url_next)
        walked.append(ids)
    assert walked == by_number

    back = []
    for _ in range(PAGES - 1):
        url_previous = link(PREVIOUS, body)
        assert "before=" in url_previous
        ids, body = page(admin_client, url_previous)
        back.append(ids)
    assert back == by_number[-2::-1]


def test_an_order_no_index_serves_keeps_offset_links(admin_client):
    add_rows("users", PAGE_SIZE + 5)
    body = page(admin_client, "/admin/users/?sort=2")[1]  # display_name: no (display_name, id) index
    assert "after=" not in link(NEXT, body) and "page=1" in link(NEXT, body)


def test_sort_and_page_number_links_drop_the_key(admin_client):
    add_rows("users", PAGE_SIZE * 2 + 5)
    body = page(admin_client, "/admin/users/")[1]
    second = link(NEXT, body)
    body = page(admin_client, second)[1]
    sort_links = re.findall(r'class="column-header[^"]*">\s*<a href="([^"]+)"', body)
    assert sort_links and not any("after=" in url or "before=" in url for url in sort_links)


def test_a_keyset_page_costs_the_queries_of_the_first(admin_client, count_queries):
    add_rows("usage_records", PAGE_SIZE * 2 + 5)
    body = page(admin_client, "/admin/usage_records/")[1]
    second = link(NEXT, body)
    with count_queries() as first:
        admin_client.get("/admin/usage_records/")
    with count_queries() as keyed:
        admin_client.get(second)
    assert keyed.count == first.count


@pytest.mark.parametrize("query", [
    "after=yesterday,1", "after=2026-12-01T08:00:00,1", "after=2026-12-01T08:00:00%2B00:00,x",
    "after=2026-12-01T08:00:00%2B00:00,99999999999", "after=", "before=,", "after=1&before=1",
    "after=2026-12-01T08:00:00%2B00:00", "after=%EF%BC%91,1", "after=9999-12-31T23:59:59-14:00,1",
    "before=0001-01-01T00:00:00%2B14:00,1",
])
def test_a_key_that_is_no_position_is_a_400(admin_client, query):
    response = admin_client.get(f"/admin/users/?{query}")
    assert response.status_code == 400


def test_a_key_of_an_id_order_is_the_id(admin_client):
    add_rows("users", PAGE_SIZE + 5)
    assert admin_client.get("/admin/users/?sort=0&after=12").status_code == 200
    assert admin_client.get("/admin/users/?sort=0&after=1,2").status_code == 400


@pytest.mark.postgres_only  # the plan asked about is PostgreSQL's
def test_a_keyset_page_is_a_range_scan_of_the_sort_index_on_postgresql(app, admin_client, db_session):
    add_rows("usage_records", PAGE_SIZE + 5)
    second = link(NEXT, page(admin_client, "/admin/usage_records/")[1])
    view = next(view for view in app.extensions["admin"][0]._views if view.endpoint == "admin_usage_records")
    with app.test_request_context(second):
        order = view.keyset_order(None, False)
        _, query = view.get_list(1, None, False, None, [], execute=False)
        statement = view.keyset_page(query, order, PAGE_SIZE).with_entities(view.model.id).statement
    compiled = statement.compile(dialect=db_session.get_bind().dialect, compile_kwargs={"literal_binds": True})
    db_session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db_session.scalars(sa.text(f"EXPLAIN {compiled}")))
    assert "ix_usage_records_occurred_at_id" in plan and "Sort" not in plan, plan
