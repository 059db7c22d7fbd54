"""Datasets over HTTP: upload with its report, the size limit before reading, pages, download, delete, catalogue, admin."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.datasets.conftest import stored_files
from tests.factories import jsonl_rows, make_dataset, make_plan, make_subscription, make_training_job, make_user
from webapp.datasets.models import Dataset
from webapp.training.models import TrainingJobDataset

HTMX = {"HX-Request": "true"}
TWO_BAD_LINES = jsonl_rows(2) + b'{"messages": [{"role": "user", "content": "no answer"}]}\n' + jsonl_rows(1) + b"{oops\n"


@pytest.fixture
def me(client, db_session, store):
    user = make_user(display_name="Uploader")
    login(client, user)
    return user


def form(content: bytes, filename: str = "greetings.jsonl", **fields):
    return {"name": "Greetings", "description": "Hello rows", "visibility": "private",
            "file": (io.BytesIO(content), filename), **fields}


def test_an_upload_without_javascript_lands_on_the_dataset_page(client, db_session, me):
    response = client.post("/datasets/new", data=form(jsonl_rows(4)), content_type="multipart/form-data")
    dataset = db_session.scalar(select(Dataset).where(Dataset.owner_user_id == me.id))
    assert response.status_code == 302 and response.headers["Location"] == f"/datasets/{dataset.id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "4 rows accepted" in page and "Hi 1" in page and "Hello 4" in page
    assert "All 4 rows for training" in page and "Download" in page


def test_bad_lines_are_reported_by_number_and_nothing_is_kept(client, db_session, me, store):
    response = client.post("/datasets/new", data=form(TWO_BAD_LINES), content_type="multipart/form-data",
                           headers=HTMX)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html
    assert "2 problems" in html and "3 rows passed" in html
    assert '<td class="number">3</td><td>needs at least one user and one assistant message</td>' in html
    assert '<td class="number">5</td><td>not valid JSON</td>' in html
    assert stored_files(store) == [] and db_session.scalar(select(Dataset.id)) is None
    fixed = client.post("/datasets/new", data=form(jsonl_rows(5)), content_type="multipart/form-data", headers=HTMX)
    assert fixed.status_code == 204 and fixed.headers["HX-Redirect"].startswith("/datasets/")


class Unreadable(io.BytesIO):
    """A request body that fails the test if the app reads any of it."""

    def read(self, *args):
        raise AssertionError("the body was read")

    readline = readinto = read


def test_a_body_over_the_limit_is_refused_before_it_is_read(client, db_session, me, store):
    db_session.refresh(me)
    make_subscription(me, make_plan(quotas={"dataset_bytes": 1000}))
    response = client.post("/datasets/new", input_stream=Unreadable(), content_type="multipart/form-data; boundary=edge",
                           environ_overrides={"CONTENT_LENGTH": "5000000"})
    assert response.status_code == 413 and "1,000 bytes" in response.get_data(as_text=True)
    assert stored_files(store) == []


def test_a_stream_longer_than_the_plan_allows_is_refused(client, db_session, me, store):
    db_session.refresh(me)
    make_subscription(me, make_plan(quotas={"dataset_bytes": 300}))
    response = client.post("/datasets/new", data=form(jsonl_rows(20)), content_type="multipart/form-data")
    assert response.status_code == 413 and "300 bytes" in response.get_data(as_text=True)
    assert stored_files(store) == []


def test_the_datasets_quota_links_the_plans(client, db_session, me):
    db_session.refresh(me)
    make_subscription(me, make_plan(quotas={"datasets": 1}))
    make_dataset(me)
    response = client.post("/datasets/new", data=form(jsonl_rows(2)), content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Your plan allows 1 datasets" in html and "#plans-heading" in html


def test_preview_is_escaped(client, db_session, me):
    row = b'{"prompt": "<script>alert(1)</script>", "completion": "<b>bold</b>"}\n'
    dataset = make_dataset(me, rows=1, content=row, name="<i>Tricky</i>")
    html = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "&lt;i&gt;Tricky&lt;/i&gt;" in html


def test_download_is_for_the_owner_and_staff(client, app, db_session, me):
    content = jsonl_rows(2)
    mine = make_dataset(me, content=content, rows=2)
    response = client.get(f"/datasets/{mine.id}/download")
    assert response.status_code == 200 and response.data == content
    assert "attachment" in response.headers["Content-Disposition"]
    public = make_dataset(make_user(), visibility="public", approved_at=mine.created_at)
    page = client.get(f"/datasets/{public.id}").get_data(as_text=True)
    assert "Download" not in page and "Jobs that used it" not in page
    assert client.get(f"/datasets/{public.id}/download").status_code == 404
    staff = app.test_client()
    login(staff, make_user("admin"))
    assert staff.get(f"/datasets/{mine.id}/download").status_code == 200


def test_another_users_private_dataset_is_not_found(client, db_session, me):
    theirs = make_dataset(make_user())
    for path in ("", "/download", "/delete"):
        assert client.get(f"/datasets/{theirs.id}{path}").status_code == 404
    assert client.post(f"/datasets/{theirs.id}/delete").status_code == 404


def test_delete_confirms_then_removes_row_and_file(client, db_session, me, store):
    dataset = make_dataset(me, name="Old rows")
    assert "Delete “Old rows” for good?" in client.get(f"/datasets/{dataset.id}/delete").get_data(as_text=True)
    assert len(stored_files(store)) == 1
    response = client.post(f"/datasets/{dataset.id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/datasets"
    assert db_session.scalar(select(Dataset.id).where(Dataset.id == dataset.id)) is None
    assert stored_files(store) == []


def test_delete_while_a_job_uses_it_says_why(client, db_session, me, store):
    dataset = make_dataset(me)
    job = make_training_job(me, status="queued")
    db_session.add(TrainingJobDataset(training_job_id=job.id, dataset_id=dataset.id, split="train"))
    db_session.flush()
    response = client.post(f"/datasets/{dataset.id}/delete", follow_redirects=True)
    assert f"Training job #{job.id} is using" in response.get_data(as_text=True)
    assert len(stored_files(store)) == 1
    assert job.name in client.get(f"/datasets/{dataset.id}").get_data(as_text=True)


def test_lists_and_catalogue_have_empty_states_search_and_pages(client, db_session, me):
    assert "You have no datasets yet" in client.get("/datasets").get_data(as_text=True)
    assert "No public dataset matches “zzz”" in client.get("/datasets/public?q=zzz").get_data(as_text=True)
    assert client.get("/datasets/public?q=nul%00byte").status_code == 400
    for number in range(3):
        make_dataset(None, visibility="public", name=f"Shared poems {number}")
    first = client.get("/datasets/public?q=poems&per_page=2").get_data(as_text=True)
    assert "Shared poems 0" in first and 'rel="next"' in first
    more = client.get("/datasets/public?q=poems&per_page=2&page=2", headers=HTMX).get_data(as_text=True)
    assert "Shared poems 2" in more and "<html" not in more


def test_staff_upload_in_the_admin_and_approve_public_datasets(client, db_session, store):
    admin = make_user("admin")
    login(client, admin)
    response = client.post("/admin/datasets/new/", content_type="multipart/form-data", data={
        "upload": (io.BytesIO(jsonl_rows(3)), "platform.jsonl"), "name": "Platform set", "description": "",
        "visibility": "public"})
    assert response.status_code == 302
    created = db_session.scalar(select(Dataset).where(Dataset.name == "Platform set"))
    assert created.row_count == 3 and created.uri.startswith("file://")
    refused = client.post("/admin/datasets/new/", content_type="multipart/form-data", data={
        "upload": (io.BytesIO(TWO_BAD_LINES), "broken.jsonl"), "name": "Broken", "visibility": "private"},
        follow_redirects=True)
    assert "line 3:" in refused.get_data(as_text=True)
    pending = make_dataset(make_user(), visibility="public")
    data = {"action": "approve", "rowid": [str(pending.id)]}
    assert client.post("/admin/datasets/action/", data=data).status_code == 302
    db_session.refresh(pending)
    assert pending.approved_by_id == admin.id and pending.review_state == "public"


def test_a_file_the_store_cannot_read_still_opens_its_page(client, db_session, me):
    dataset = make_dataset(me)
    dataset.uri = "file:///nonexistent/elsewhere.jsonl"
    db_session.flush()
    page = client.get(f"/datasets/{dataset.id}")
    assert page.status_code == 200 and "cannot be read from the artifact store" in page.get_data(as_text=True)
    download = client.get(f"/datasets/{dataset.id}/download")
    assert download.status_code == 503 and "artifact store" in download.get_data(as_text=True)

