"""The home page summarises the signed-in user's plan, usage, running jobs and best minion, and only theirs."""
from __future__ import annotations

from tests.conftest import login
from tests.factories import make_minion, make_plan, make_subscription, make_training_job, make_usage, make_user


def test_home_shows_plan_usage_running_jobs_and_best_minion(client, db_session):
    user, other = make_user(), make_user()
    make_subscription(user, make_plan(name="Starter", quotas={"tokens": 1000}))
    make_usage(user, "input_tokens", 300)
    make_training_job(user, status="running", name="Mine running")
    make_training_job(user, status="succeeded", name="Mine finished")
    make_training_job(other, status="running", name="Theirs running")
    make_minion(user, name="Low", xp=10)
    make_minion(user, name="High", xp=900)
    make_minion(user, name="Old hero", xp=5000, status="retired")
    make_minion(other, name="Their hero", xp=9000)
    login(client, user)

    html = client.get("/").get_data(as_text=True)

    assert "Starter" in html and "300 of 1,000" in html
    assert "Mine running" in html and "Mine finished" not in html and "Theirs running" not in html
    assert "High" in html and "Old hero" not in html and "Their hero" not in html


def test_home_without_subscription_jobs_or_minions_shows_empty_states(client, db_session):
    login(client, make_user())
    html = client.get("/").get_data(as_text=True)
    assert "No running subscription" in html and "No training jobs are running" in html
    assert "You have no minions yet" in html


def test_a_new_user_gets_a_checklist_that_ticks_off_from_real_rows(client, db_session, store):
    from tests.factories import make_dataset, make_provider, make_provider_config
    from webapp.home.services import summary

    user = make_user(email_verified_at=None)
    login(client, user)
    html = client.get("/").get_data(as_text=True)
    assert "Get started" in html
    for path in ("/account", "/account/providers", "/minions", "/datasets/new", "/jobs"):
        assert f'href="{path}"' in html
    assert [step.done for step in summary(user, None).steps] == [False] * 5
    make_provider_config(user, make_provider())  # settings without a key do not count
    make_minion(user)
    make_dataset(user)
    assert [step.done for step in summary(user, None).steps] == [False, False, True, True, False]
    make_provider_config(user, make_provider(), api_key="sk-home-0123456789abcdef")
    make_training_job(user)
    db_session.refresh(user)
    user.email_verified_at = user.created_at
    db_session.flush()
    assert all(step.done for step in summary(user, None).steps)
    assert "Get started" not in client.get("/").get_data(as_text=True)
