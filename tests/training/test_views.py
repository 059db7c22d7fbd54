import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.factories import make_training_job, make_user
from webapp.accounts.models import AuditEvent
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingJobEvent

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ada(client, db_session):
    user = make_user()
    login(client, user)
    return user


@pytest.mark.parametrize(("method", "suffix"), [
    ("get", ""), ("get", "/row"), ("post", "/cancel"), ("post", "/retry"),
])
def test_another_user_s_job_is_404_to_see_and_to_act_on(client, db_session, ada, method, suffix):
    job = make_training_job(make_user(), status="failed" if suffix == "/retry" else "running")
    status_before = job.status
    response = getattr(client, method)(f"/jobs/{job.id}{suffix}")
    assert response.status_code == 404
    db_session.expire_all()
    assert job.status == status_before
    assert db_session.scalars(select(TrainingJob).filter_by(retry_of_id=job.id)).first() is None


def test_the_list_shows_only_the_user_s_jobs_without_an_owner_column(client, db_session, ada):
    make_training_job(ada, name="Mine")
    make_training_job(make_user(), name="Theirs")
    html = client.get("/jobs").get_data(as_text=True)
    assert "Mine" in html and "Theirs" not in html and ">Owner</th>" not in html


def test_staff_see_everyone_s_jobs_an_owner_column_and_the_summary(client, db_session):
    admin = make_user(role="admin")
    login(client, admin)
    make_training_job(make_user(display_name="Grace H"), name="Theirs", status="failed")
    html = client.get("/jobs").get_data(as_text=True)
    assert "Theirs" in html and ">Owner</th>" in html and "Grace H" in html
    assert "Failure rate, last 24 h" in html and "Oldest queued job" in html


def test_only_active_rows_poll_and_a_finished_row_stops(client, db_session, ada):
    running = make_training_job(ada, status="running")
    finished = make_training_job(ada, status="succeeded")
    html = client.get("/jobs").get_data(as_text=True)
    assert html.count('hx-trigger="every 3s"') == 1
    assert f'hx-get="/jobs/{running.id}/row"' in html and f"/jobs/{finished.id}/row" not in html

    running.status, running.progress = "succeeded", 1.0
    db.session.flush()
    row = client.get(f"/jobs/{running.id}/row", headers=HTMX).get_data(as_text=True)
    assert row.lstrip().startswith("<tr") and "every 3s" not in row and "badge-succeeded" in row


def test_a_page_without_active_jobs_has_no_polling_row(client, db_session, ada):
    failed = make_training_job(ada, status="failed")
    response = client.get("/jobs")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and f'id="job-{failed.id}"' in html and "badge-failed" in html
    assert "every 3s" not in html


def test_filters_narrow_the_table_fragment(client, db_session, ada):
    make_training_job(ada, status="failed", name="Broken")
    make_training_job(ada, status="queued", name="Waiting")
    fragment = client.get("/jobs?status=failed", headers=HTMX).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="job-table"')
    assert "Broken" in fragment and "Waiting" not in fragment
    assert "No training jobs match" in client.get("/jobs?status=canceled").get_data(as_text=True)


def test_the_detail_poll_carries_only_newer_events_out_of_band(client, db_session, ada):
    job = make_training_job(ada, status="running")
    old = TrainingJobEvent(training_job_id=job.id, message="Warmed up", metrics={"loss": 2.0})
    db_session.add(old)
    db_session.flush()
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "Warmed up" in page and f"after={old.id}" in page and "<svg" in page
    new = TrainingJobEvent(training_job_id=job.id, message="Step 240", metrics={"loss": 1.5})
    db_session.add(new)
    db_session.flush()
    poll = client.get(f"/jobs/{job.id}?after={old.id}", headers=HTMX).get_data(as_text=True)
    assert 'hx-swap-oob="afterbegin:#event-log"' in poll and "Step 240" in poll and "Warmed up" not in poll
    assert f"after={new.id}" in poll


def test_a_finished_job_s_detail_stops_polling_and_shows_the_error(client, db_session, ada):
    job = make_training_job(ada, status="failed", error_message="CUDA out of memory")
    html = client.get(f"/jobs/{job.id}", headers=HTMX).get_data(as_text=True)
    assert "every 3s" not in html and "CUDA out of memory" in html and "Retry job" in html


def test_cancel_from_the_page_is_audited(client, db_session, ada):
    job = make_training_job(ada, status="queued")
    response = client.post(f"/jobs/{job.id}/cancel", headers=HTMX)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == f"/jobs/{job.id}"
    db_session.expire_all()
    assert job.status == "canceled"
    assert db_session.scalars(select(AuditEvent).filter_by(action="training_job.cancel")).one().actor_id == ada.id


def test_cancelling_a_finished_job_is_409_with_the_reason(client, db_session, ada):
    job = make_training_job(ada, status="succeeded")
    response = client.post(f"/jobs/{job.id}/cancel", headers=HTMX)
    assert response.status_code == 409 and "cannot become canceled" in response.get_data(as_text=True)


def test_a_retry_clicked_twice_creates_one_job(client, db_session, ada):
    job = make_training_job(ada, status="failed")
    first = client.post(f"/jobs/{job.id}/retry")
    second = client.post(f"/jobs/{job.id}/retry")
    retries = db_session.scalars(select(TrainingJob).filter_by(retry_of_id=job.id)).all()
    assert len(retries) == 1
    assert first.headers["Location"] == second.headers["Location"] == f"/jobs/{retries[0].id}"


def test_staff_with_jobs_manage_may_act_on_anyone_s_job(client, db_session):
    login(client, make_user(role="admin"))
    job = make_training_job(make_user(), status="running")
    assert client.post(f"/jobs/{job.id}/cancel").status_code == 302
    db_session.expire_all()
    assert job.status == "canceled"


def test_the_actions_need_the_csrf_token(client, db_session, ada, csrf_enabled):
    job = make_training_job(ada, status="queued")
    assert client.post(f"/jobs/{job.id}/cancel").status_code == 400


@pytest.mark.parametrize("role", ["user", "admin"])
def test_the_job_list_runs_a_constant_number_of_queries(client, db_session, count_queries, role):
    from tests.factories import make_minion

    user = make_user(role=role)
    login(client, user)

    def add_jobs(count):
        for index in range(count):
            owner = make_user() if role == "admin" else user
            make_training_job(owner, status=("running", "failed", "queued")[index % 3], minion=make_minion(owner))

    add_jobs(3)
    with count_queries() as small:
        assert client.get("/jobs").status_code == 200
    add_jobs(30)
    with count_queries() as large:
        assert client.get("/jobs").status_code == 200
    assert large.count == small.count
