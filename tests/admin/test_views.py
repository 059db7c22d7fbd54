"""Every table has a view, and every view works on the demo data without showing a secret."""
from __future__ import annotations

import re

import sqlalchemy as sa

from tests.admin.conftest import model_views
from tests.conftest import login
from tests.factories import make_plan, make_session, make_subscription, make_training_job, make_user
from webapp.admin.base import INLINE_LIMIT
from webapp.extensions import db
from webapp.seed.demo import seed_demo


def test_every_table_in_the_metadata_has_a_view(app):
    with app.app_context():
        covered = {view.model.__tablename__ for view in model_views(app)}
        assert covered == set(db.metadata.tables)


def secret_columns() -> list[sa.Column]:
    """Every column holding a secret, found from the schema itself: hashes, ciphertexts and raw bytes."""
    return [
        column for table in db.metadata.tables.values() for column in table.columns
        if column.name.endswith(("_hash", "_ciphertext")) or isinstance(column.type, sa.LargeBinary)
    ]


def test_the_schema_s_secret_columns_are_the_ones_we_know():
    found = {f"{column.table.name}.{column.name}" for column in secret_columns()}
    assert found == {
        "users.password_hash", "sessions.session_token_hash", "sessions.refresh_token_hash", "tokens.token_hash",
        "job_runners.token_hash", "user_provider_configs.api_key_ciphertext", "metering_tokens.token_hash",
    }


def test_no_view_lists_details_edits_or_exports_a_secret_column(app):
    with app.app_context():
        for view in model_views(app):
            secrets = {column.name for column in secret_columns() if column.table is view.model.__table__}
            shown = [view._list_columns, view._details_columns, view._export_columns]
            names = {str(name) for columns in shown for name, _ in columns}
            form_fields = set(view._create_form_class()._fields) | set(view._edit_form_class()._fields)
            searchable = {str(getattr(column, "key", column)) for column in view.column_searchable_list or ()}
            assert not (names | form_fields | searchable) & secrets, view.endpoint


def first_id(view) -> int | None:
    return db.session.scalar(sa.select(view.model.id).order_by(view.model.id).limit(1))


def datetime_filter(view) -> str:
    arg = next(arg for arg in view._filter_args if arg.endswith("_greater_than"))
    return f"flt0_{arg}=2000-01-01+00:00:00"


def secret_values() -> list[str]:
    values = []
    for column in secret_columns():
        for value in db.session.scalars(sa.select(column).where(column.is_not(None))):
            values.append(value.decode() if isinstance(value, bytes) else value)
    return values


def test_walk_every_view_as_admin_on_demo_data(client, db_session):
    """List, details, create and edit forms, one filter, one search and the export: 200, no secret inside."""
    seed_demo("demo-password-123")
    login(client, "admin@demo.test", "demo-password-123")
    bodies = []
    for url in ("/admin/", "/admin/alembic_revision/"):
        response = client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.get_data(as_text=True))
    for view in model_views(client.application):
        base = f"/admin/{view.model.__tablename__}"
        row = first_id(view)
        assert row is not None, f"the demo data has no {view.model.__tablename__}"
        urls = [f"{base}/", f"{base}/details/?id={row}", f"{base}/?{datetime_filter(view)}"]
        if view._search_supported:
            urls.append(f"{base}/?search=a")
        if view.allow_create:
            urls.append(f"{base}/new/")
        if view.allow_edit:
            urls.append(f"{base}/edit/?id={row}")
        if view.can_export:
            urls.append(f"{base}/export/csv/")
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, url
            body = response.get_data(as_text=True)
            assert "Traceback" not in body
            bodies.append(body)
    secrets = secret_values()
    assert len(secrets) > 12
    everything = "\n".join(bodies)
    for secret in secrets:
        assert secret not in everything


def test_list_pages_mark_timestamps_as_utc(admin_client, admin_user):
    body = admin_client.get("/admin/users/").get_data(as_text=True)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", body)


def inline_lists(body: str) -> dict[str, list[str]]:
    """Each inline of a details page by its heading: the names of its records' links, or None."""
    sections = re.findall(r'<h2 class="h5" id="inline-\d+">([^<]+)</h2>(.*?)</section>', body, re.S)
    return {heading: re.findall(r'<li><a href="[^"]+">([^<]+)</a></li>', section) or re.findall(r"None\.", section)
            for heading, section in sections}


def test_a_user_s_details_list_what_points_at_them_newest_first_in_one_query(admin_client, count_queries):
    """Subscriptions (named with their plan), sessions, minions and jobs are read side by side in one query:
    each list newest first, at most INLINE_LIMIT long, and the page's queries do not grow with them."""
    user = make_user()
    ended = make_subscription(user, make_plan("old", name="Old"), status="expired", days_into_period=45)
    live = make_subscription(user, make_plan("now", name="Now"))
    session = make_session(user, ip_address="203.0.113.9")
    jobs = [make_training_job(user, name=f"Job {n}") for n in range(INLINE_LIMIT + 2)]
    url = f"/admin/users/details/?id={user.id}"
    admin_client.get(url)  # once first, so the once-a-minute touch of the session is not counted
    with count_queries() as counter:
        body = admin_client.get(url).get_data(as_text=True)
    assert inline_lists(body) == {
        "Subscriptions": [f"#{live.id} Now (active)", f"#{ended.id} Old (expired)"],
        "Sessions": [f"#{session.id} from 203.0.113.9"],
        "Minions": ["None."],
        "Training jobs": [f"#{job.id} {job.name}" for job in reversed(jobs[2:])],
    }
    assert counter.count == 3, "the signed-in session, the user with their roles, and the inlines"
