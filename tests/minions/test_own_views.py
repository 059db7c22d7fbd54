"""My minions over HTTP: list, create (plain and HTMX), quota message, public page, owner-only changes."""
from __future__ import annotations

import re

from sqlalchemy import select

from tests.factories import make_ai_model, make_minion, make_plan, make_subscription, make_training_job, make_user
from webapp.minions.models import Minion

HTMX = {"HX-Request": "true"}


def test_an_empty_list_says_what_to_do(client, me):
    make_ai_model(name="Reference One")
    html = client.get("/minions").get_data(as_text=True)
    assert "You have no minions yet" in html and "Reference One" in html


def test_create_without_javascript_goes_to_the_new_minions_page(client, db_session, me):
    model = make_ai_model()
    response = client.post("/minions", data={"name": "  Quill   Pen ", "model_id": model.id})
    minion = db_session.scalar(select(Minion).where(Minion.owner_user_id == me.id))
    assert minion.name == "Quill Pen"
    assert response.status_code == 302 and response.headers["Location"] == f"/minions/{minion.id}"


def test_create_over_htmx_navigates_and_errors_swap_the_panel(client, db_session, me):
    model = make_ai_model()
    created = client.post("/minions", data={"name": "Quill", "model_id": model.id}, headers=HTMX)
    assert created.status_code == 204 and created.headers["HX-Redirect"].startswith("/minions/")
    refused = client.post("/minions", data={"name": "quill", "model_id": model.id}, headers=HTMX)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "already have a minion" in body
    assert body.lstrip().startswith('<div id="minions-panel"') and "<html" not in body


def test_past_the_quota_the_refusal_names_the_limit_and_links_the_plans(client, db_session, me):
    db_session.refresh(me)  # signing in changed the row
    make_subscription(me, make_plan(quotas={"minions": 1}))
    model = make_ai_model()
    make_minion(me, model)
    response = client.post("/minions", data={"name": "One too many", "model_id": model.id})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Your plan allows 1 minions" in html and 'href="/account/subscription#plans-heading"' in html


def test_bad_avatar_addresses_are_refused(client, db_session, me):
    model = make_ai_model()
    for avatar in ("javascript:alert(1)", "http://insecure.example.test/a.png"):
        response = client.post("/minions", data={"name": "Pic", "model_id": model.id, "avatar_url": avatar})
        assert response.status_code == 422
    assert db_session.scalar(select(Minion.id).where(Minion.owner_user_id == me.id)) is None


def test_the_public_page_shows_standing_and_hides_jobs_from_others(client, db_session, me):
    owner = make_user(display_name="Ada")
    minion = make_minion(owner, xp=350, name="<script>alert(1)</script>")
    make_training_job(owner, status="running", minion=minion, name="Secret job",
                      hyperparameters={"learning_rate": 0.123})
    html = client.get(f"/minions/{minion.id}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "Ada" in html and "Level 3" in html and "350 XP" in html
    assert "Secret job" not in html and "0.123" not in html and "Manage" not in html
    rank_link = re.search(r'href="(/leaderboard[^"]*)">#\d+', html).group(1)
    assert rank_link.endswith(f"#minion-{minion.id}")


def test_the_owner_sees_jobs_and_controls(client, db_session, me):
    minion = make_minion(me, name="Quill")
    make_training_job(me, status="succeeded", minion=minion, name="First lesson")
    html = client.get(f"/minions/{minion.id}").get_data(as_text=True)
    assert "First lesson" in html and "Manage" in html and f"/jobs/new?minion={minion.id}" in html


def test_rename_and_avatar_are_saved_together(client, db_session, me):
    minion = make_minion(me, name="Quill")
    response = client.post(f"/minions/{minion.id}/edit",
                           data={"name": "Quill II", "avatar_url": "https://img.example.test/q.png"})
    assert response.status_code == 302
    db_session.refresh(minion)
    assert (minion.name, minion.avatar_url) == ("Quill II", "https://img.example.test/q.png")


def test_delete_asks_first_then_deletes(client, db_session, me):
    minion = make_minion(me, name="Quill")
    confirm = client.get(f"/minions/{minion.id}/delete")
    assert confirm.status_code == 200 and "Delete Quill for good?" in confirm.get_data(as_text=True)
    fragment = client.get(f"/minions/{minion.id}/delete", headers=HTMX).get_data(as_text=True)
    assert "<html" not in fragment and "data-dismiss" in fragment
    assert db_session.get(Minion, minion.id) is not None
    done = client.post(f"/minions/{minion.id}/delete")
    assert done.status_code == 302 and done.headers["Location"] == "/minions"
    assert db_session.scalar(select(Minion.id).where(Minion.id == minion.id)) is None


def test_a_refused_delete_says_why(client, db_session, me):
    minion = make_minion(me, name="Busy")
    job = make_training_job(me, status="queued", minion=minion)
    response = client.post(f"/minions/{minion.id}/delete", follow_redirects=True)
    assert f"active training job (#{job.id})" in response.get_data(as_text=True)
    assert db_session.get(Minion, minion.id) is not None


def test_archive_and_restore(client, db_session, me):
    minion = make_minion(me, name="Quill")
    client.post(f"/minions/{minion.id}/archive")
    db_session.refresh(minion)
    assert minion.status == "retired"
    assert "Archived minions are not on the leaderboard" in client.get(f"/minions/{minion.id}").get_data(as_text=True)
    client.post(f"/minions/{minion.id}/restore")
    db_session.refresh(minion)
    assert minion.status == "idle"


def test_another_users_minion_cannot_be_changed(client, db_session, me):
    theirs = make_minion(make_user(), name="Theirs")
    for path in ("edit", "archive", "delete"):
        assert client.post(f"/minions/{theirs.id}/{path}", data={"name": "Mine now"}).status_code == 404
    db_session.refresh(theirs)
    assert theirs.name == "Theirs" and theirs.status == "idle"


def test_leaderboard_rows_and_home_link_to_minion_pages(client, db_session, me):
    mine = make_minion(me, xp=100, name="Quill")
    assert f'href="/minions/{mine.id}"' in client.get("/leaderboard").get_data(as_text=True)
    assert f'href="/minions/{mine.id}"' in client.get("/").get_data(as_text=True)


def test_the_list_paginates(client, db_session, me):
    model = make_ai_model()
    for number in range(3):
        make_minion(me, model, name=f"M{number}")
    first = client.get("/minions?per_page=2").get_data(as_text=True)
    assert 'rel="next"' in first
    second = client.get("/minions?per_page=2&page=2", headers=HTMX).get_data(as_text=True)
    assert "M2" in second or "M0" in second
    assert "<html" not in second


def test_my_pages_run_a_constant_number_of_queries(client, db_session, me, count_queries, store):
    from tests.factories import make_dataset
    from webapp.minions.services import award_xp
    from webapp.providers.models import ModelVersion

    model = make_ai_model()
    minion = make_minion(me, model, name="Quill")
    parent = None

    def grow(count: int) -> None:
        nonlocal parent
        for number in range(count):
            make_minion(me, model, name=f"Extra {count}-{number}")
            make_training_job(me, status="succeeded", minion=minion)
            award_xp(minion, 10, "quest.completed")
            make_dataset(me)
            version = ModelVersion(model_id=model.id, version=f"v{count}.{number}",
                                   parent_version_id=parent.id if parent else None)
            db_session.add(version)
            db_session.flush()
            parent = version
        minion.model_version_id = parent.id
        db_session.flush()

    urls = ["/minions?per_page=3", f"/minions/{minion.id}?per_page=3", "/datasets?per_page=3", "/"]

    def counts() -> list[int]:
        found = []
        for url in urls:
            with count_queries() as counter:
                assert client.get(url).status_code == 200
            found.append(counter.count)
        return found

    grow(2)
    small = counts()
    grow(6)
    assert counts() == small


def test_a_minion_page_asked_for_over_htmx_by_another_user_shows_no_jobs(client, db_session, me):
    theirs = make_minion(make_user())
    make_training_job(theirs.owner, minion=theirs, name="Their secret job")
    response = client.get(f"/minions/{theirs.id}", headers=HTMX)
    assert response.status_code == 200 and "Their secret job" not in response.get_data(as_text=True)


def test_control_characters_never_reach_the_database(client, db_session, me):
    model = make_ai_model()
    refused = client.post("/minions", data={"name": "Nul\x00 byte", "model_id": model.id})
    assert refused.status_code == 400 and "name" in refused.get_data(as_text=True)
    response = client.post("/minions", data={"name": "Bell\x07 and\ttab", "model_id": model.id})
    assert response.status_code == 302
    assert db_session.scalars(select(Minion.name).where(Minion.owner_user_id == me.id)).all() == ["Bell and tab"]
