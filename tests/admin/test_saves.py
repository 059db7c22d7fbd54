"""Saving through the admin: validation, optimistic locking, dependants, audit rows, bulk actions."""
from __future__ import annotations

import html

import sqlalchemy as sa

from tests.conftest import login
from tests.factories import (
    make_ai_model, make_minion, make_plan, make_subscription, make_training_job, make_user,
)
from webapp.accounts.models import AuditEvent, User, UserSession
from webapp.accounts.passwords import verify_password
from webapp.accounts.sessions import start_session
from webapp.admin.base import DEPENDANTS_MESSAGE, STALE_MESSAGE
from webapp.billing.models import Plan
from webapp.minions.models import Minion
from webapp.providers.models import ModelVersion

PLAN_FORM = {"code": "gold", "name": "Gold", "description": "", "price_cents": "1900", "currency": "USD",
             "billing_interval": "month", "tokens_limit": "5", "quotas": '{"minions": 2}', "features": '["a"]', "sort_order": "5"}


def audit_actions(db_session, row) -> list[str]:
    db_session.expire_all()
    return list(db_session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == row.__tablename__, AuditEvent.object_id == row.id).order_by(AuditEvent.id)))


def test_create_edit_delete_write_audit_rows_with_old_and_new_values(admin_client, db_session):
    response = admin_client.post("/admin/plans/new/", data=PLAN_FORM)
    assert response.status_code == 302
    plan = db_session.scalar(sa.select(Plan).where(Plan.code == "gold"))
    assert plan.quotas == {"tokens": 5, "minions": 2} and plan.features == ["a"]

    edit = dict(PLAN_FORM, name="Gold plus", lock_version=str(plan.lock_version))
    assert admin_client.post(f"/admin/plans/edit/?id={plan.id}", data=edit).status_code == 302
    db_session.expire_all()
    assert plan.name == "Gold plus"
    update = db_session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "admin.update",
                                                           AuditEvent.object_id == plan.id))
    assert update.changes == {"name": ["Gold", "Gold plus"]}

    details = admin_client.get(f"/admin/plans/details/?id={plan.id}").get_data(as_text=True)
    history_url = f"/admin/plans/history/?id={plan.id}"
    assert "Gold plus" in details and f'hx-get="{history_url}" hx-trigger="load"' in details
    assert "admin.update" not in details, "the audit trail is fetched after the page, not with it"
    history = admin_client.get(history_url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "History" in history and "admin.update" in history and "<html" not in history

    plan_id = plan.id
    assert admin_client.post("/admin/plans/delete/", data={"id": str(plan_id)}).status_code == 302
    db_session.expire_all()
    assert db_session.get(Plan, plan_id) is None
    actions = db_session.scalars(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "plans", AuditEvent.object_id == plan_id).order_by(AuditEvent.id))
    assert list(actions) == ["admin.create", "admin.update", "admin.delete"]


def test_invalid_json_is_refused_and_nothing_is_saved(admin_client, db_session):
    response = admin_client.post("/admin/plans/new/", data=dict(PLAN_FORM, quotas="{tokens: 5"))
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "Not valid JSON" in body
    assert "{tokens: 5" in body, "the form keeps what was typed"
    assert db_session.scalar(sa.select(Plan).where(Plan.code == "gold")) is None

    wrong_shape = admin_client.post("/admin/plans/new/", data=dict(PLAN_FORM, quotas="[1, 2]"))
    assert "Enter a JSON object" in wrong_shape.get_data(as_text=True)
    assert db_session.scalar(sa.select(Plan).where(Plan.code == "gold")) is None


def test_a_concurrent_edit_is_refused_and_the_record_is_unchanged(admin_client, db_session):
    plan = make_plan(code="silver", name="Silver")
    db_session.commit()
    opened = str(plan.lock_version)
    first = dict(PLAN_FORM, code="silver", name="Silver by Ada", lock_version=opened)
    second = dict(PLAN_FORM, code="silver", name="Silver by Grace", lock_version=opened)
    assert admin_client.post(f"/admin/plans/edit/?id={plan.id}", data=first).status_code == 302
    response = admin_client.post(f"/admin/plans/edit/?id={plan.id}", data=second)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.escape(STALE_MESSAGE, quote=True) in body and "Silver by Grace" in body
    db_session.expire_all()
    assert plan.name == "Silver by Ada"
    assert audit_actions(db_session, plan) == ["admin.update"]

    # Doing what the message says: reload, see the current values, edit again.
    reloaded = admin_client.get(f"/admin/plans/edit/?id={plan.id}").get_data(as_text=True)
    assert 'value="Silver by Ada"' in reloaded and f'value="{plan.lock_version}"' in reloaded
    again = dict(second, lock_version=str(plan.lock_version))
    assert admin_client.post(f"/admin/plans/edit/?id={plan.id}", data=again).status_code == 302
    db_session.expire_all()
    assert plan.name == "Silver by Grace"


def test_deleting_a_row_others_depend_on_gives_a_clear_message(admin_client, db_session):
    plan = make_plan()
    make_subscription(make_user(), plan)
    db_session.commit()
    response = admin_client.post("/admin/plans/delete/", data={"id": str(plan.id)}, follow_redirects=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and DEPENDANTS_MESSAGE in body
    assert "IntegrityError" not in body and "FOREIGN KEY" not in body.upper().replace("FOREIGN KEYS", "")
    db_session.expire_all()
    assert db_session.get(Plan, plan.id) is not None


def test_a_duplicate_is_a_plain_message_and_the_form_keeps_its_input(admin_client, db_session):
    make_user(email="dup@example.test")
    db_session.commit()
    # Differs only in case: the form's own check passes and the database's lower(email) index refuses it.
    form = {"email": "DUP@example.test", "display_name": "Typed name", "password": "a long good passphrase"}
    response = admin_client.post("/admin/users/new/", data=form)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "conflicts with another record" in body
    assert "Typed name" in body and "UNIQUE" not in body and "duplicate key" not in body


def test_users_are_created_with_a_hashed_password_that_meets_the_policy(admin_client, db_session):
    form = {"email": "new@example.test", "display_name": "New Person", "is_active": "y"}
    weak = admin_client.post("/admin/users/new/", data=dict(form, password="short"))
    assert weak.status_code == 200 and "at least" in weak.get_data(as_text=True)
    assert admin_client.post("/admin/users/new/", data=dict(form, password="a long good passphrase")).status_code == 302
    user = db_session.scalar(sa.select(User).where(User.email == "new@example.test"))
    assert verify_password(user.password_hash, "a long good passphrase")
    created = db_session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "admin.create",
                                                            AuditEvent.object_id == user.id))
    assert created.changes["password_hash"] == "[redacted]"

    edit = {"email": user.email, "display_name": "Renamed", "is_active": "y", "password": "",
            "lock_version": str(user.lock_version)}
    old_hash = user.password_hash
    assert admin_client.post(f"/admin/users/edit/?id={user.id}", data=edit).status_code == 302
    db_session.expire_all()
    assert user.display_name == "Renamed" and user.password_hash == old_hash


def run_action(client, table: str, action: str, ids) -> None:
    data = {"action": action, "rowid": [str(i) for i in ids]}
    assert client.post(f"/admin/{table}/action/", data=data).status_code == 302


def test_bulk_deactivate_and_sign_out_are_audited(admin_client, db_session, app):
    target = make_user()
    with app.test_request_context():
        start_session(target, "127.0.0.1", "test")
    db_session.commit()
    run_action(admin_client, "users", "revoke_sessions", [target.id])
    run_action(admin_client, "users", "deactivate", [target.id])
    db_session.expire_all()
    assert target.is_active is False
    assert not db_session.scalar(sa.select(UserSession.is_active).where(UserSession.user_id == target.id))
    assert audit_actions(db_session, target) == ["admin.revoke_sessions", "admin.deactivate"]


def test_bulk_cancel_archive_and_recompute_are_audited(admin_client, db_session):
    owner = make_user()
    job = make_training_job(owner, status="running")
    model = make_ai_model()
    version = ModelVersion(model_id=model.id, version="v1", stage="production")
    minion = make_minion(owner, xp=250)
    db_session.add(version)
    db_session.flush()
    minion.xp = 999  # drifted from its ledger (250)
    db_session.commit()

    run_action(admin_client, "training_jobs", "cancel", [job.id])
    run_action(admin_client, "model_versions", "archive", [version.id])
    run_action(admin_client, "minions", "recompute_xp", [minion.id])
    db_session.expire_all()
    assert job.status == "canceled" and version.stage == "archived"
    assert db_session.get(Minion, minion.id).xp == 250
    assert audit_actions(db_session, job) == ["training_job.cancel"]
    assert audit_actions(db_session, version) == ["admin.archive"]
    assert audit_actions(db_session, minion) == ["admin.recompute_xp"]


def test_deactivating_a_user_ends_their_sessions_at_once_and_audits_it(admin_client, db_session, app):
    target = make_user()
    target_client = app.test_client()
    login(target_client, target)
    login(app.test_client(), target)
    run_action(admin_client, "users", "deactivate", [target.id])
    db_session.expire_all()
    assert target.is_active is False
    assert db_session.scalars(sa.select(UserSession.is_active).where(UserSession.user_id == target.id)).all() \
        == [False, False]
    event = db_session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "admin.deactivate",
                                                          AuditEvent.object_id == target.id))
    assert event.changes == {"is_active": [True, False], "sessions_revoked": 2}
    target.is_active = True
    db_session.commit()
    assert target_client.get("/account").status_code == 302, "the session was revoked, not only refused"


def test_unticking_active_in_the_edit_form_ends_the_users_sessions(admin_client, db_session, app):
    target = make_user()
    target_client = app.test_client()
    login(target_client, target)
    db_session.expire_all()
    edit = {"email": target.email, "display_name": target.display_name, "password": "",
            "lock_version": str(target.lock_version)}
    assert admin_client.post(f"/admin/users/edit/?id={target.id}", data=edit).status_code == 302
    db_session.expire_all()
    assert target.is_active is False
    assert db_session.scalar(sa.select(UserSession.is_active).where(UserSession.user_id == target.id)) is False
    assert audit_actions(db_session, target) == ["admin.revoke_sessions", "admin.update"]
    target.is_active = True
    db_session.commit()
    assert target_client.get("/account").status_code == 302
