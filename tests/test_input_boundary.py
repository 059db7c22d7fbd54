"""The input boundary (webapp/inputs.py): each finding of the hostile-input review, reproduced."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

from tests.conftest import login
from tests.factories import make_plan, make_training_job, make_user
from webapp.accounts.models import AuditEvent
from webapp.admin.base import spreadsheet_safe
from webapp.db import ValueOutOfRange
from webapp.training.models import TrainingJob, TrainingJobEvent


@pytest.fixture
def admin_client(client, db_session):
    login(client, make_user("admin"))
    return client


def audit_rows(db_session) -> int:
    return db_session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.mark.parametrize(("url", "data", "field"), [
    ("/login", {"email": "a\x00@example.test", "password": "x"}, "email"),
    ("/login", {"email": "a@example.test", "password": "pass\x00word"}, "password"),
    ("/password/forgot", {"email": "a\x00@example.test"}, "email"),
])
def test_nul_in_an_unauthenticated_form_is_400_naming_the_field(client, db_session, url, data, field):
    before = audit_rows(db_session)
    response = client.post(url, data=data)
    assert response.status_code == 400
    assert f"{field} holds a NUL character" in response.get_data(as_text=True)
    assert audit_rows(db_session) == before


def test_nul_in_the_query_string_is_400_as_json_for_a_json_caller(client, db_session):
    response = client.get("/login?next=%00", headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json["detail"].startswith("next holds a NUL")


def test_a_lone_surrogate_in_json_is_400_naming_the_field(client, db_session):
    response = client.post("/api/runner/jobs/1/report", data='{"events": [{"message": "\\ud800"}]}',
                           content_type="application/json")
    assert response.status_code == 400 and response.json["detail"].startswith("events[0].message holds")


def test_a_csv_export_with_a_nul_search_is_400_before_streaming(admin_client):
    response = admin_client.get("/admin/users/export/csv/?search=%00")
    assert response.status_code == 400 and "search holds a NUL" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", [
    f"/jobs/{2**31}", f"/jobs/{2**63}/row", f"/support/users/{10**23}/verification", "/jobs/\uff19",
])
def test_an_id_beyond_the_column_is_404(admin_client, url):
    method = admin_client.post if url.endswith("verification") else admin_client.get
    assert method(url).status_code == 404


@pytest.mark.parametrize("url", [
    f"/jobs?page={10**20}", "/leaderboard?model=-999999999999", f"/support/users?q=a&page={2**31}",
    "/admin/users/?page=-1", "/admin/users/?page_size=-5", "/admin/users/ajax/lookup/?name=roles&query=a&offset=-1",
    "/admin/users/ajax/lookup/?name=roles&query=a&limit=-1",
])
def test_a_number_out_of_range_in_the_query_is_400_naming_it(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    name = url.rsplit("&", 1)[-1].split("?")[-1].split("=")[0]
    assert f"{name} must be a whole number" in response.get_data(as_text=True)


def test_after_out_of_range_on_a_job_poll_is_400(admin_client, db_session):
    job = make_training_job(make_user(), status="running")
    response = admin_client.get(f"/jobs/{job.id}?after={10**20}", headers={"HX-Request": "true"})
    assert response.status_code == 400


def test_a_date_beyond_the_calendar_is_a_field_error_not_a_500(admin_client):
    response = admin_client.get("/jobs?until=9999-12-31")
    assert response.status_code == 200 and "Pick a date from" in response.get_data(as_text=True)


def test_a_10_mb_form_on_a_cancel_button_is_413_and_changes_nothing(client, db_session):
    owner = make_user()
    login(client, owner)
    job = make_training_job(owner, status="running")
    response = client.post(f"/jobs/{job.id}/cancel", data={"pad": "x" * 10_000_000})
    assert response.status_code == 413
    db_session.expire_all()
    assert db_session.get(TrainingJob, job.id).status == "running"
    assert db_session.scalar(select(func.count()).select_from(TrainingJobEvent)) == 0


def test_a_value_longer_than_its_column_is_refused_before_the_database(db_session):
    user = make_user()
    user.display_name = "x" * 500
    with pytest.raises(ValueOutOfRange, match="display_name is 500 characters long; at most 120 fit"):
        db_session.flush()
    db_session.rollback()


def test_an_integer_beyond_its_column_is_refused_before_the_database(db_session):
    with pytest.raises(ValueOutOfRange, match="price_cents is out of range"):
        make_plan(price_cents=2**40)
    db_session.rollback()


def test_a_data_error_from_the_database_is_400_and_logged_as_a_bug(app, client, db_session, caplog, monkeypatch):
    def unchecked_value():
        raise DataError("SELECT 1", {}, Exception("value out of range"))

    monkeypatch.setitem(app.view_functions, "accounts.password_forgot", unchecked_value)
    response = client.get("/password/forgot")
    assert response.status_code == 400 and "Nothing was saved" in response.get_data(as_text=True)
    assert any("bug: an unchecked value" in record.message for record in caplog.records)


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", " =1", "\t1", "  @x", "\n+1"])
def test_formula_cells_are_quoted_even_after_leading_whitespace(cell):
    assert spreadsheet_safe(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["plain", "a=b", "1-2", "", " text"])
def test_ordinary_cells_are_left_alone(cell):
    assert spreadsheet_safe(cell) == cell


@pytest.mark.parametrize("url", [f"/admin/users/details/?id={10**20}", f"/admin/users/edit/?id={2**63}",
                                 "/admin/users/edit/?id=-1"])
def test_an_admin_record_id_beyond_the_column_is_not_found(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/users/")


def test_a_redirect_target_with_a_newline_is_sent_percent_encoded(admin_client):
    response = admin_client.get("/admin/users/details/?id=999999&url=/admin/users/%0d%0aSet-Cookie:x")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/users/%0D%0ASet-Cookie:x"
