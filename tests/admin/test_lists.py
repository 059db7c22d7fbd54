"""Large tables: constant query counts, capped counts, streamed and spreadsheet-safe exports, access."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.factories import ensure_roles, make_payment, make_plan, make_training_job, make_usage, make_user
from webapp.accounts.models import Permission, Role
from webapp.billing.models import Plan


def list_queries(client, count_queries, url: str) -> int:
    with count_queries() as counter:
        assert client.get(url).status_code == 200
    return counter.count


@pytest.mark.parametrize("url", ["/admin/users/", "/admin/users/?search=user", "/admin/users/?page_size=50"])
def test_list_query_count_does_not_grow_with_rows(admin_client, count_queries, url):
    for _ in range(3):
        make_user()
    few = list_queries(admin_client, count_queries, url)
    for _ in range(60):
        make_user()
    assert list_queries(admin_client, count_queries, url) == few


# The lists the benchmark measures, each with the filter it uses.
BIG_LISTS = {"users": "flt0_is_active_equals=1", "usage_records": "flt0_metric_equals=requests",
             "payments": "flt0_status_equals=succeeded", "training_jobs": "flt0_status_equals=queued"}
BIG_LIST_URLS = [f"/admin/{table}/{query}" for table, flt in BIG_LISTS.items()
                 for query in ("", f"?{flt}", "?search=user", "?page=2")]


def add_rows(count: int) -> None:
    """``count`` users, each with a payment, a usage record and a training job."""
    for _ in range(count):
        user = make_user()
        make_payment(user)
        make_usage(user, "requests", 1)
        make_training_job(user)


@pytest.mark.parametrize("url", BIG_LIST_URLS)
def test_big_lists_query_count_does_not_grow_with_rows(admin_client, count_queries, url):
    add_rows(3)
    few = list_queries(admin_client, count_queries, url)
    add_rows(60)
    assert list_queries(admin_client, count_queries, url) == few


@pytest.mark.parametrize("url", BIG_LIST_URLS)
def test_big_lists_query_count_does_not_depend_on_page_size(admin_client, count_queries, url):
    """Page 2 holds rows at 20 a page and none at 100: still the same queries."""
    add_rows(45)
    separator = "&" if "?" in url else "?"
    assert list_queries(admin_client, count_queries, f"{url}{separator}page_size=100") == list_queries(
        admin_client, count_queries, url)


def test_pages_do_not_overlap_when_the_sort_column_ties(admin_client, db_session):
    """id breaks ties in the sort, so every row is on exactly one page."""
    when = make_user().created_at
    users = [make_user(created_at=when) for _ in range(30)]
    db_session.commit()
    seen = []
    for page in range(3):
        body = admin_client.get(f"/admin/users/?page={page}").get_data(as_text=True)
        seen += [user.id for user in users if user.email in body]
    assert sorted(seen) == sorted(user.id for user in users)


def test_search_matches_a_related_column_and_own_columns(admin_client, db_session):
    buyer = make_user(email="needle-buyer@example.test")
    make_payment(buyer, description="Plan")
    make_payment(make_user(), description="Needle refund")
    make_payment(make_user(), description="Plan")
    db_session.commit()
    body = admin_client.get("/admin/payments/?search=NEEDLE").get_data(as_text=True)
    assert "needle-buyer@example.test" in body and "2 rows" in body


def test_counts_are_capped_above_the_threshold(admin_client, app):
    for _ in range(4):
        make_user()
    app.config["COUNT_ESTIMATE_THRESHOLD"] = 2
    try:
        body = admin_client.get("/admin/users/?search=example").get_data(as_text=True)
    finally:
        app.config["COUNT_ESTIMATE_THRESHOLD"] = 10_000
    assert "More than 2 rows match" in body


def test_export_streams_csv_with_formulas_escaped(admin_client):
    make_user(display_name="=HYPERLINK(\"http://evil.test\")")
    make_user(display_name="-2+3")
    response = admin_client.get("/admin/users/export/csv/")
    assert response.is_streamed and response.mimetype == "text/csv"
    body = response.get_data(as_text=True)
    assert "'=HYPERLINK" in body and "'-2+3" in body
    assert "\n=HYPERLINK" not in body and ",=HYPERLINK" not in body


def test_access_needs_admin_access_and_the_domain_permission(client, db_session):
    assert client.get("/admin/users/").status_code == 302
    login(client, make_user("support"))
    assert client.get("/admin/").status_code == 403
    assert client.get("/admin/users/").status_code == 403


def test_read_only_staff_cannot_write_through_any_way_in(client, db_session):
    """A role with billing.read only: lists open, but no create, edit, delete, action or lookup."""
    ensure_roles()
    codes = ("admin.access", "billing.read")
    role = Role(name="billing-reader", permissions=list(db_session.scalars(
        select(Permission).where(Permission.code.in_(codes)))))
    db_session.add(role)
    reader = make_user(role=None)
    reader.roles = [role]
    plan = make_plan(name="Keep")
    db_session.commit()
    login(client, reader)
    listing = client.get("/admin/plans/").get_data(as_text=True)
    assert "Keep" in listing and "/admin/plans/new/" not in listing
    home = client.get("/admin/")
    menu = home.get_data(as_text=True)
    assert home.status_code == 200 and 'href="/admin/plans/"' in menu
    assert "/admin/users/" not in menu, "menu shows only what opens"
    assert client.get("/admin/users/").status_code == 403
    client.post(f"/admin/plans/edit/?id={plan.id}", data={"name": "Changed", "lock_version": "1"})
    client.post("/admin/plans/delete/", data={"id": str(plan.id)})
    client.post("/admin/plans/new/", data={"code": "x", "name": "x", "price_cents": "1"})
    assert client.get("/admin/user_subscriptions/ajax/lookup/?name=plan&query=K").status_code == 403
    assert client.post("/admin/plans/ajax/update/", data={"list_form_pk": plan.id, "name": "x"}).status_code == 404
    db_session.expire_all()
    assert plan.name == "Keep"
    assert db_session.scalar(select(Plan).where(Plan.code == "x")) is None
