"""The one quota decision: limits from the live plan (or the sign-up plan), counted or metered."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import (
    make_ai_model, make_minion, make_plan, make_subscription, make_training_job, make_usage, make_user,
)
from webapp.db import utcnow
from webapp.quotas import Allowance, OveragePrice, QuotaExceeded, allowance, require, used


def test_counted_quotas_refuse_the_one_past_the_limit(db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"minions": 2}))
    model = make_ai_model()
    make_minion(user, model)
    require(user, "minions")  # the second fits
    make_minion(user, model)
    with pytest.raises(QuotaExceeded) as refused:
        require(user, "minions")
    assert (refused.value.key, refused.value.limit) == ("minions", 2)
    assert str(refused.value).startswith("Your plan allows 2 minions")


def test_archived_minions_count_only_when_the_plan_says_so(db_session):
    user = make_user()
    plan = make_plan(quotas={"minions": 1})
    make_subscription(user, plan)
    make_minion(user, make_ai_model(), status="retired")
    require(user, "minions")
    plan.quotas = {"minions": 1, "minions_count_archived": True}
    db_session.flush()
    with pytest.raises(QuotaExceeded):
        require(user, "minions")


def test_period_quotas_count_only_this_period(db_session):
    user = make_user()
    subscription = make_subscription(user, make_plan(quotas={"training_jobs": 1, "training_minutes": 30}),
                                     days_into_period=5)
    make_training_job(user, status="succeeded", queued_at=utcnow() - timedelta(days=6))
    make_usage(user, "training_minutes", 29, occurred_at=utcnow() - timedelta(days=1), subscription=subscription)
    make_usage(user, "training_minutes", 500, occurred_at=utcnow() - timedelta(days=6))
    terms = allowance(user)
    assert used(user, "training_jobs", terms) == 0
    assert used(user, "training_minutes", terms) == 29
    require(user, "training_jobs")
    require(user, "training_minutes")  # one minute left
    make_usage(user, "training_minutes", 1, subscription=subscription)
    with pytest.raises(QuotaExceeded):
        require(user, "training_minutes")


def test_concurrent_jobs_count_active_jobs_only(db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"concurrent_jobs": 1}))
    make_training_job(user, status="succeeded")
    require(user, "concurrent_jobs")
    make_training_job(user, status="running")
    with pytest.raises(QuotaExceeded):
        require(user, "concurrent_jobs")


def test_without_a_live_subscription_the_sign_up_plan_holds(app, db_session):
    user = make_user()
    make_plan(code=app.config["SIGNUP_PLAN"], quotas={"datasets": 0})
    with pytest.raises(QuotaExceeded):
        require(user, "datasets")
    terms = allowance(user)
    assert terms.period_start <= utcnow() < terms.period_end
    assert terms.period_end - terms.period_start == timedelta(days=30)


def test_a_missing_key_is_unlimited(db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={}))
    for _ in range(3):
        make_minion(user, make_ai_model())
    require(user, "minions", adding=100)


def test_dataset_limits_have_configured_defaults_that_a_plan_overrides(app, db_session):
    user = make_user()
    terms = allowance(user)
    assert terms.limit("datasets") == app.config["DATASETS_PER_USER"]
    assert terms.limit("dataset_bytes") == app.config["DATASET_MAX_BYTES"]
    make_subscription(user, make_plan(quotas={"dataset_bytes": 1024, "datasets": None}))
    terms = allowance(user)
    assert terms.limit("dataset_bytes") == 1024 and terms.limit("datasets") is None


def test_a_metered_quota_with_an_overage_price_allows_use_past_the_limit(db_session):
    user = make_user()
    plan = make_plan(quotas={"tokens": 1_000, "requests": 10, "overage": {"tokens": {"per": 1_000, "cents": 2}}})
    make_subscription(user, plan)
    make_usage(user, "input_tokens", 1_500)
    make_usage(user, "requests", 10)
    terms = require(user, "tokens")  # 500 past the limit, billed instead of refused
    assert (terms.at_limit("tokens"), terms.at_limit("requests")) == ("overage", "block")
    with pytest.raises(QuotaExceeded):
        require(user, "requests")


def test_overage_is_charged_per_started_step():
    price = OveragePrice(per=1_000, cents=2)
    assert [price.amount_cents(n) for n in (0, -5, 1, 1_000, 1_001, 12_345)] == [0, 0, 2, 2, 4, 26]


def test_a_counted_quota_blocks_even_with_an_overage_price(db_session):
    terms = Allowance({"minions": 1, "overage": {"minions": {"per": 1, "cents": 100}}}, utcnow(), utcnow())
    assert terms.at_limit("minions") == "block"
