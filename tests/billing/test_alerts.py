"""Usage alerts: 50%, 80% and 100% of a metered quota, one mail each per period and metric, a banner, a switch."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.concurrency import all_at_once
from tests.conftest import login
from tests.factories import make_minion, make_plan, make_subscription, make_usage, make_user
from webapp.billing import alerts, services
from webapp.billing.models import UsageAlert
from webapp.extensions import db
from webapp.mail import outbox


def alert_rows(user) -> list[tuple[str, int]]:
    return list(db.session.execute(select(UsageAlert.quota_key, UsageAlert.threshold)
                                   .where(UsageAlert.user_id == user.id)
                                   .order_by(UsageAlert.period_start, UsageAlert.quota_key, UsageAlert.threshold)))


def mails_to(app, user) -> list[str]:
    return [message["Subject"] for message in outbox(app) if message["To"] == user.email]


def test_alerts_fire_once_per_threshold_per_period(app, db_session):
    user = make_user()
    plan = make_plan(quotas={"tokens": 1_000, "requests": 10, "overage": {"tokens": {"per": 100, "cents": 3}}})
    subscription = make_subscription(user, plan, days_into_period=5)
    outbox(app).clear()

    make_usage(user, "input_tokens", 499)
    assert alerts.send_usage_alerts() == 0 and mails_to(app, user) == []

    make_usage(user, "output_tokens", 1)  # 500: exactly half
    assert alerts.send_usage_alerts() == 1
    assert alerts.send_usage_alerts() == 0, "the same crossing is not mailed again"
    assert mails_to(app, user) == ["You have used 50% of your tokens quota"]

    make_usage(user, "input_tokens", 300)  # 800
    make_usage(user, "requests", 10)  # 100% of requests at once: 50, 80 and 100 recorded, one mail
    assert alerts.send_usage_alerts() == 4
    make_usage(user, "input_tokens", 5_000)  # past the limit, billed as overage
    alerts.send_usage_alerts()
    alerts.send_usage_alerts()

    assert alert_rows(user) == [("requests", 50), ("requests", 80), ("requests", 100),
                                ("tokens", 50), ("tokens", 80), ("tokens", 100)]
    assert sorted(mails_to(app, user)) == sorted([
        "You have used 50% of your tokens quota", "You have used 80% of your tokens quota",
        "You have used all of your requests quota", "You have used all of your tokens quota"])
    full = next(m for m in outbox(app) if m["Subject"] == "You have used all of your tokens quota").get_content()
    assert "billed at 3 cents per 100" in full and "/account/subscription" in full
    blocked = next(m for m in outbox(app) if m["Subject"] == "You have used all of your requests quota").get_content()
    assert "is refused until the period ends" in blocked

    # The next period starts counting again: its crossings are new.
    subscription.current_period_start += timedelta(days=30)
    subscription.current_period_end += timedelta(days=30)
    make_usage(user, "requests", 5, occurred_at=subscription.current_period_start + timedelta(hours=1))
    assert alerts.send_usage_alerts(now=subscription.current_period_start + timedelta(days=1)) == 1
    assert alert_rows(user)[-1] == ("requests", 50)


def test_a_muted_metric_is_neither_recorded_nor_mailed(app, db_session):
    user = make_user(muted_usage_alerts=["tokens"])
    make_subscription(user, make_plan(quotas={"tokens": 100, "requests": 10}))
    make_usage(user, "input_tokens", 100)
    make_usage(user, "requests", 9)
    outbox(app).clear()
    assert alerts.send_usage_alerts() == 2
    assert alert_rows(user) == [("requests", 50), ("requests", 80)]
    assert mails_to(app, user) == ["You have used 80% of your requests quota"]


def test_concurrent_runs_record_and_mail_each_crossing_once(race_app):
    with race_app.app_context():
        user = make_user()
        make_subscription(user, make_plan(quotas={"tokens": 100}))
        make_usage(user, "input_tokens", 60)
        db.session.commit()
        user_id = user.id
    outbox(race_app).clear()

    def run(_index: int) -> int:
        with race_app.app_context():
            recorded = alerts.send_usage_alerts()
            db.session.commit()
            return recorded

    assert sorted(all_at_once(4, run)) == [0, 0, 0, 1]
    with race_app.app_context():
        assert db.session.scalar(select(func.count(UsageAlert.id)).where(UsageAlert.user_id == user_id)) == 1
    assert len([m for m in outbox(race_app) if "50%" in m["Subject"]]) == 1


def test_the_banner_shows_the_highest_alert_until_dismissed(client, db_session):
    user = make_user()
    make_subscription(user, make_plan(quotas={"tokens": 100}))
    make_usage(user, "input_tokens", 85)
    alerts.send_usage_alerts()
    db_session.commit()
    login(client, user)
    for url in ("/", "/account/subscription"):
        body = client.get(url).get_data(as_text=True)
        assert "You have used 80% of your tokens quota for this period" in body and "50%" not in body, url

    response = client.post("/account/usage-alerts/dismiss", headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.get_data(as_text=True) == ""
    assert "usage-alerts-banner" not in client.get("/").get_data(as_text=True)
    assert alerts.send_usage_alerts() == 0, "a dismissed alert is not sent again"


def test_the_account_page_switches_alerts_off_per_metric(client, db_session):
    user = make_user()
    login(client, user)
    page = client.get("/account").get_data(as_text=True)
    assert 'name="tokens" type="checkbox" value="y" checked' in page or ('name="tokens"' in page and "checked" in page)
    response = client.post("/account/usage-alerts", data={"requests": "y", "training_minutes": "y"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/account#usage-alerts")
    db_session.expire_all()
    assert user.muted_usage_alerts == ["tokens"]
    page = client.get("/account").get_data(as_text=True)
    tokens_box = page[page.index('name="tokens"') - 80:page.index('name="tokens"') + 80]
    assert "checked" not in tokens_box
    client.post("/account/usage-alerts", data={"tokens": "y", "requests": "y", "training_minutes": "y"})
    db_session.expire_all()
    assert user.muted_usage_alerts == []


def test_the_forecast_beside_the_meter_matches_a_hand_computation(db_session):
    user = make_user()
    plan = make_plan(quotas={"tokens": 1_000_000, "requests": 1_000, "minions": 2}, currency="EUR")
    subscription = make_subscription(user, plan, days_into_period=10)
    start = subscription.current_period_start
    make_minion(user)
    make_usage(user, "input_tokens", 250_000, occurred_at=start + timedelta(days=1))
    make_usage(user, "output_tokens", 150_000, occurred_at=start + timedelta(days=9))
    make_usage(user, "requests", 100, occurred_at=start + timedelta(days=2))
    now = start + timedelta(days=10)

    meters = {meter.key: meter for meter in services.usage_meters(user, subscription, now=now)}

    # 400,000 tokens in 10 days is 40,000 a day; the 600,000 left last 15 more days: day 25 of 30.
    assert meters["tokens"].runs_out_at == start + timedelta(days=25)
    # 100 requests in 10 days: 900 more would take 90 days, past the period's end.
    assert meters["requests"].runs_out_at is None
    assert (meters["minions"].used, meters["minions"].runs_out_at) == (1, None), "a count, not a rate: no forecast"
    assert {meter.currency for meter in meters.values()} == {"EUR"}, "each meter in the plan's currency"


def test_the_forecast_date_is_the_hand_computed_day():
    from datetime import datetime, timezone

    start = datetime(2026, 12, 1, tzinfo=timezone.utc)
    end = start + timedelta(days=30)
    now = datetime(2026, 12, 5, 12, tzinfo=timezone.utc)  # 4.5 days in
    # 300,000 of 1,000,000 tokens in 4.5 days; 700,000 more at that rate take 10.5 days: 16 Dec, 00:00.
    assert services.run_out_at(300_000, 1_000_000, start, end, now) == datetime(2026, 12, 16, tzinfo=timezone.utc)
    assert services.day_text(services.run_out_at(300_000, 1_000_000, start, end, now)) == "16 Dec 2026"
    assert services.run_out_at(0, 1_000_000, start, end, now) is None, "nothing used: not this period"
    assert services.run_out_at(100_000, 1_000_000, start, end, now) is None, "40.5 days: not this period"
    assert services.run_out_at(1_000_000, 1_000_000, start, end, now) is None, "already reached"
    assert services.run_out_at(999_999, 1_000_000, start, end, now) is not None, "one short: still ahead"
    assert services.run_out_at(1, 1_000_000, start, end, start) is None, "no time elapsed: no rate yet"
    # One of two used in 4.5 days: the other 4.5 days later. Half a day in, 300,000 tokens: the rest 28 hours later.
    assert services.run_out_at(1, 2, start, end, now) == datetime(2026, 12, 10, tzinfo=timezone.utc)
    assert services.run_out_at(300_000, 1_000_000, start, end, start + timedelta(hours=12)) == \
        datetime(2026, 12, 2, 16, tzinfo=timezone.utc)
    # Half the limit in half the period: the rest is reached at the period's very end, which is the next one's.
    halfway = start + timedelta(days=15)
    assert services.run_out_at(500_000, 1_000_000, start, end, halfway) is None
    assert services.run_out_at(500_001, 1_000_000, start, end, halfway) < end


def test_the_subscription_page_says_when_each_meter_runs_out_and_what_happens_past_it(client, db_session):
    user = make_user()
    make_plan("big", 9900, name="Big", quotas={"tokens": 10_000_000, "requests": 10_000, "minions": 10})
    make_plan("huge", 19900, name="Huge", quotas={"tokens": 100_000_000})
    plan = make_plan("small", 900, name="Small", quotas={
        "tokens": 1_000_000, "requests": 1_000, "training_minutes": 600,
        "overage": {"tokens": {"per": 1_000, "cents": 2}}})
    subscription = make_subscription(user, plan, days_into_period=10)
    make_usage(user, "input_tokens", 1_012_345)
    make_usage(user, "requests", 1_000)
    make_usage(user, "training_minutes", 300, occurred_at=subscription.current_period_start + timedelta(hours=1))
    db_session.commit()
    login(client, user)
    body = client.get("/account/subscription").get_data(as_text=True)
    assert "billed as overage at $0.02 per 1,000" in body and "$0.26 so far" in body
    assert "Blocked: new work that needs requests is refused" in body
    # 300 minutes in 10 days: the 300 left take 10 more days.
    runs_out = services.day_text(subscription.current_period_start + timedelta(days=20))
    assert f"At this rate you reach your training minute limit on <strong>{runs_out}</strong>." in body
    assert "Move to Big, which covers your use" in body and "/account/subscription/change?plan=big" in body
