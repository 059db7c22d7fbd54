"""/jobs/new: the form follows the chosen trainer, previews the quotas and the key, and starts a job."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.factories import (
    make_ai_model, make_minion, make_plan, make_provider, make_provider_config, make_subscription, make_user,
)
from tests.training.engine_helpers import make_dataset
from webapp.extensions import db
from webapp.training.models import TrainingJob, TrainingJobEvent
from webapp.training.services import PENDING_DISPATCH, new_job

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ada(client, db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"training_jobs": 5, "training_minutes": 90, "concurrent_jobs": 2}))
    login(client, user)
    return user


@pytest.fixture
def setup(ada):
    minion = make_minion(ada, name="Quill")
    return minion, make_dataset(ada, 40, seed=1, name="Train rows"), make_dataset(ada, 20, seed=2, name="Check rows")


def form(minion, train, validation=None, **fields):
    return {"minion": minion.id, "base_model": minion.model_id, "train_dataset": train.id,
            "validation_dataset": validation.id if validation else "", "epochs": 3, "learning_rate": 0.1,
            "batch_size": 16, "l2": 0.001, **fields}


def test_the_form_offers_the_trainer_s_fields_and_previews_what_the_job_uses(client, setup):
    minion, train, _ = setup
    html = client.get(f"/jobs/new?minion={minion.id}").get_data(as_text=True)
    assert 'name="epochs"' in html and 'min="1"' in html and 'max="50"' in html and 'value="8"' in html
    assert 'name="learning_rate"' in html and "Train rows (yours, jsonl, 40 rows)" in html
    assert f'<option selected value="{minion.id}">Quill</option>' in html
    assert "5 this period" in html and "90" in html and "none needed" in html
    # Changing the minion or the model re-renders the form for that trainer (HTMX, data- attributes).
    assert html.count('data-hx-get="/jobs/new"') == 2 and 'data-hx-target="#job-new"' in html


def test_the_form_defaults_to_the_datasets_of_the_latest_job(client, db_session, ada, setup):
    minion, train, validation = setup
    client.post("/jobs/new", data=form(minion, train, validation))
    html = client.get("/jobs/new").get_data(as_text=True)
    assert f'<option selected value="{train.id}">Train rows' in html
    assert f'<option selected value="{validation.id}">Check rows' in html


def test_starting_a_job_opens_its_page_and_dispatches_it_after_the_commit(client, db_session, ada, setup):
    minion, train, validation = setup
    response = client.post("/jobs/new", data=form(minion, train, validation, name="First try"))
    job = db_session.scalars(select(TrainingJob).filter_by(user_id=ada.id)).one()
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/jobs/{job.id}")
    assert job.name == "First try" and job.status == "queued" and job.job_type == "internal"
    assert job.hyperparameters == {"epochs": 3, "learning_rate": 0.1, "batch_size": 16, "l2": 0.001}
    assert {(link.dataset_id, link.split) for link in job.datasets} == {(train.id, "train"), (validation.id, "validation")}
    assert job.dispatched_at is not None and PENDING_DISPATCH not in db.session.info, "sent once committed"
    assert db_session.scalar(select(TrainingJobEvent.message).filter_by(training_job_id=job.id)) == \
        f"Queued by {ada.display_name}"


def test_out_of_range_hyperparameters_are_refused_with_the_range(client, db_session, ada, setup):
    minion, train, _ = setup
    response = client.post("/jobs/new", data=form(minion, train, epochs=500, learning_rate="fast"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Epochs must be from 1 to 50." in html and "Not a valid float value." in html
    assert db_session.scalars(select(TrainingJob).filter_by(user_id=ada.id)).first() is None


def test_someone_else_s_minion_or_dataset_is_not_a_choice(client, db_session, ada, setup):
    minion, train, _ = setup
    other = make_user()
    theirs = make_dataset(other, 10, seed=3, name="Theirs")
    response = client.post("/jobs/new", data=form(minion, theirs))
    assert response.status_code == 422 and "Not a valid choice" in response.get_data(as_text=True)
    response = client.post("/jobs/new", data=form(make_minion(other), train))
    assert response.status_code == 422
    assert db_session.scalars(select(TrainingJob).filter_by(user_id=ada.id)).first() is None


def test_a_spent_quota_is_shown_and_refused(client, db_session, setup):
    user = make_user()
    make_subscription(user, make_plan(quotas={"training_jobs": 0}))
    minion = make_minion(user)
    train = make_dataset(user, 10, seed=1, name="Mine")
    client.post("/logout")
    login(client, user)
    html = client.get("/jobs/new").get_data(as_text=True)
    assert "You have no training jobs left this period." in html and "disabled" in html
    response = client.post("/jobs/new", data=form(minion, train))
    assert response.status_code == 409 and "Your plan allows 0 training jobs" in response.get_data(as_text=True)


def test_an_unverified_user_cannot_start_a_job(client, db_session):
    user = make_user(email_verified_at=None)
    minion = make_minion(user)
    train = make_dataset(user, 10, seed=1, name="Mine")
    login(client, user)
    assert "Confirm your email address" in client.get("/jobs/new").get_data(as_text=True)
    response = client.post("/jobs/new", data=form(minion, train))
    assert response.status_code == 403
    assert db_session.scalars(select(TrainingJob).filter_by(user_id=user.id)).first() is None


def test_an_external_model_previews_the_provider_key_and_its_trainer_s_fields(client, db_session, ada, setup):
    minion, _, _ = setup
    provider = make_provider(name="Acme AI")
    external = make_ai_model(model_type="external", provider_id=provider.id, name="Acme Large")
    html = client.get(f"/jobs/new?minion={minion.id}&base_model={external.id}", headers=HTMX).get_data(as_text=True)
    assert "<html" not in html and 'id="job-new"' in html
    assert "(external trainer)" in html and "add your Acme AI key" in html
    make_provider_config(ada, provider, api_key="sk-test-1234567890")
    html = client.get(f"/jobs/new?minion={minion.id}&base_model={external.id}").get_data(as_text=True)
    assert "your Acme AI key ending in 7890" in html


def test_without_a_minion_the_page_says_what_to_do(client, db_session, ada):
    html = client.get("/jobs/new").get_data(as_text=True)
    assert "You have no minion to train yet." in html


def test_a_submission_loads_each_chosen_record_by_its_id(db_session, store, count_queries):
    owner = make_user()
    minion = make_minion(owner)
    train, validation = make_dataset(owner, 5, 1, "Train set"), make_dataset(owner, 5, 2, "Check set")
    model = minion.model
    submitted = new_job(minion.id, model.id, train.id, validation.id, {"epochs": 3.0}, "Named run")
    assert (submitted.minion, submitted.model, submitted.train, submitted.validation) == (
        minion, model, train, validation)
    assert (submitted.hyperparameters, submitted.name) == ({"epochs": 3.0}, "Named run")
    external = make_ai_model(model_type="external", provider_id=make_provider(name="Acme AI").id)
    db_session.expunge_all()  # as the next request finds them: nothing loaded yet
    with count_queries() as reads:
        submitted = new_job(minion.id, external.id, train.id, None, {}, None)
        assert submitted.validation is None and submitted.model.provider.name == "Acme AI"
    assert reads.count == 3, "one read a record, the model's provider with the model, none for a missing split"
