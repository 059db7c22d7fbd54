"""A user's own minions as services: usable models, quota, unique names, archive, delete, the page's facts."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.factories import (
    make_ai_model, make_minion, make_plan, make_provider, make_provider_config, make_subscription,
    make_training_job, make_user,
)
from webapp.accounts.models import AuditEvent
from webapp.db import utcnow
from webapp.minions import ownership
from webapp.minions.models import Minion, MinionXpEvent
from webapp.minions.ownership import MinionError
from webapp.minions.services import BoardFilters, award_xp, leaderboard_page
from webapp.providers.models import ModelVersion
from webapp.quotas import QuotaExceeded


def actions_on(db_session, minion_id: int) -> list[str]:
    return list(db_session.scalars(select(AuditEvent.action).where(
        AuditEvent.object_type == "minions", AuditEvent.object_id == minion_id).order_by(AuditEvent.id)))


def test_usable_models_are_reference_keyed_external_and_own_custom(db_session):
    user, other = make_user(), make_user()
    keyed, unkeyed = make_provider(), make_provider()
    make_provider_config(user, keyed, api_key="sk-usable-0123456789abcdef")
    make_provider_config(user, unkeyed)  # settings only, no key
    reference = make_ai_model()
    external = make_ai_model(model_type="external", provider_id=keyed.id)
    make_ai_model(model_type="external", provider_id=unkeyed.id)
    mine = make_ai_model(model_type="custom", owner_user_id=user.id)
    make_ai_model(model_type="custom", owner_user_id=other.id)
    make_ai_model(is_active=False)
    usable = {model.id for model in ownership.usable_models(user)}
    assert {reference.id, external.id, mine.id} <= usable
    assert all(m.model_type == "reference" or m.id in (external.id, mine.id) for m in ownership.usable_models(user))


def test_create_is_audited_and_held_to_the_plan_quota(db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"minions": 2}))
    model = make_ai_model()
    first = ownership.create_minion(user, "Quill", model.id, None)
    ownership.create_minion(user, "Byron", model.id, "https://img.example.test/b.png")
    assert actions_on(db_session, first.id) == ["minion.create"]
    with pytest.raises(QuotaExceeded) as refused:
        ownership.create_minion(user, "Third", model.id, None)
    assert refused.value.limit == 2
    assert db_session.scalar(select(Minion.id).where(Minion.name == "Third")) is None


def test_archived_minions_free_a_place_unless_the_plan_counts_them(db_session):
    user = make_user()
    plan = make_plan(quotas={"minions": 1})
    make_subscription(user, plan)
    model = make_ai_model()
    first = ownership.create_minion(user, "One", model.id, None)
    ownership.archive_minion(first, user)
    second = ownership.create_minion(user, "Two", model.id, None)
    with pytest.raises(QuotaExceeded):
        ownership.restore_minion(first, user)
    plan.quotas = {"minions": 2, "minions_count_archived": True}
    db_session.flush()
    with pytest.raises(QuotaExceeded):
        ownership.create_minion(user, "Three", model.id, None)
    assert second.status == "idle"


def test_names_are_unique_per_owner_whatever_the_case(db_session):
    user, other = make_user(), make_user()
    model = make_ai_model()
    quill = ownership.create_minion(user, "Quill", model.id, None)
    with pytest.raises(MinionError, match="already have a minion"):
        ownership.create_minion(user, "QUILL", model.id, None)
    ownership.create_minion(other, "quill", model.id, None)  # another owner's name space
    byron = ownership.create_minion(user, "Byron", model.id, None)
    with pytest.raises(MinionError):
        ownership.rename_minion(byron, "quill", user)
    ownership.rename_minion(quill, "Quill II", user)
    assert actions_on(db_session, quill.id) == ["minion.create", "minion.rename"]


def test_a_model_the_user_may_not_use_is_refused(db_session):
    user = make_user()
    theirs = make_ai_model(model_type="custom", owner_user_id=make_user().id)
    with pytest.raises(MinionError) as refused:
        ownership.create_minion(user, "Sneaky", theirs.id, None)
    assert refused.value.field == "model_id"


def test_archived_minions_leave_the_board_and_keep_their_ledger(db_session):
    user = make_user()
    model = make_ai_model()
    minion = make_minion(user, model, xp=500)
    filters = BoardFilters(model_id=model.id)
    assert [row.minion.id for row in leaderboard_page(filters, 1, 10).rows] == [minion.id]
    ownership.archive_minion(minion, user)
    assert leaderboard_page(filters, 1, 10).rows == []
    assert leaderboard_page(BoardFilters(window="week", model_id=model.id), 1, 10).rows == []
    assert db_session.scalar(select(MinionXpEvent.delta).where(MinionXpEvent.minion_id == minion.id)) == 500
    assert page_of(minion).standing.all_time is None


def test_delete_is_refused_while_a_job_is_active(db_session):
    user = make_user()
    minion = make_minion(user)
    job = make_training_job(user, status="running", minion=minion)
    with pytest.raises(MinionError, match=f"#{job.id}"):
        ownership.delete_minion(minion, user)
    with pytest.raises(MinionError):
        ownership.archive_minion(minion, user)
    job.status = "succeeded"
    db_session.flush()
    minion_id = minion.id
    ownership.delete_minion(minion, user)
    assert db_session.get(Minion, minion_id) is None
    assert actions_on(db_session, minion_id)[-1] == "minion.delete"
    db_session.refresh(job)
    assert job.minion_id is None  # the job stays in the owner's history


def page_of(minion: Minion, days: int = 30, viewer_id: int | None = None) -> ownership.MinionPage:
    """The minion's page as its owner (or ``viewer_id``) sees it, first page of jobs."""
    return ownership.minion_page(minion.id, viewer_id or minion.owner_user_id, 1, 10, days=days)


def test_standing_xp_history_and_lineage(db_session):
    user = make_user()
    model = make_ai_model()
    leader = make_minion(make_user(), model, xp=900)
    minion = make_minion(user, model, xp=300)
    assert page_of(leader).standing.all_time.rank < page_of(minion).standing.all_time.rank
    award_xp(minion, 50, "quest.completed")
    history = page_of(minion, days=7).history
    assert len(history) == 7 and history[-1].gained == 350 and history[-1].total == 350
    job = make_training_job(user, status="succeeded", minion=minion)
    root = ModelVersion(model_id=model.id, version="v1", stage="production")
    db_session.add(root)
    db_session.flush()
    child = ModelVersion(model_id=model.id, version="v2", parent_version_id=root.id, training_job_id=job.id)
    db_session.add(child)
    db_session.flush()
    minion.model_version_id = child.id
    db_session.flush()
    assert [(v.version, v.training_job_id) for v in page_of(minion).lineage] == [("v2", job.id), ("v1", None)]
    assert [line.id for line in page_of(minion).jobs.items] == [job.id]
    assert page_of(minion, viewer_id=leader.owner_user_id).jobs is None, "only the owner gets the jobs"
    assert ownership.minion_page(minion.id + 1000, user.id, 1, 10) is None


def test_xp_history_carries_the_total_from_before_the_window(db_session):
    minion = make_minion(make_user())
    old = MinionXpEvent(minion_id=minion.id, delta=40, reason="old", created_at=utcnow() - timedelta(days=90))
    db_session.add(old)
    db_session.flush()
    history = page_of(minion, days=3).history
    assert [day.total for day in history] == [40, 40, 40] and sum(day.gained for day in history) == 0
