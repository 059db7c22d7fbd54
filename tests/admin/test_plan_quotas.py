"""The plan form's metered quotas: a limit, block or overage, and the overage price, as checked form fields."""
from __future__ import annotations

import html

import sqlalchemy as sa

from tests.admin.test_saves import PLAN_FORM
from tests.factories import make_plan
from webapp.billing.models import Plan

BASE = dict(PLAN_FORM, tokens_limit="", quotas='{"minions": 3}')


def saved(db_session) -> Plan | None:
    db_session.expire_all()
    return db_session.scalar(sa.select(Plan).where(Plan.code == "gold"))


def test_a_quota_billed_as_overage_is_saved_with_its_price(admin_client, db_session):
    form = dict(BASE, tokens_limit="1000000", tokens_at_limit="overage", tokens_overage_per="1000",
                tokens_overage_cents="2", requests_limit="500", requests_at_limit="block",
                requests_overage_per="junk that is ignored when the quota blocks")
    assert admin_client.post("/admin/plans/new/", data=form).status_code == 302
    assert saved(db_session).quotas == {"minions": 3, "tokens": 1_000_000, "requests": 500,
                                        "overage": {"tokens": {"per": 1_000, "cents": 2}}}


def test_overage_needs_a_limit_and_a_price_and_nothing_is_saved_without_them(admin_client, db_session):
    for fields, message in (
        ({"tokens_at_limit": "overage", "tokens_overage_per": "1000", "tokens_overage_cents": "2"},
         "Set a limit: overage is what is used past it."),
        ({"tokens_limit": "10", "tokens_at_limit": "overage", "tokens_overage_cents": "2"}, "Required to bill overage."),
        ({"tokens_limit": "10", "tokens_at_limit": "overage", "tokens_overage_per": "0", "tokens_overage_cents": "2"},
         "Number must be between 1 and"),
        ({"tokens_limit": "-1"}, "Number must be between 0 and"),
        ({"tokens_limit": "10", "tokens_at_limit": "refund"}, "Not a valid choice"),
    ):
        response = admin_client.post("/admin/plans/new/", data=dict(BASE, **fields))
        assert response.status_code == 200 and message in html.unescape(response.get_data(as_text=True)), fields
        assert saved(db_session) is None


def test_metered_keys_typed_into_the_other_quotas_are_refused(admin_client, db_session):
    response = admin_client.post("/admin/plans/new/", data=dict(BASE, quotas='{"tokens": 5, "overage": {}}'))
    assert "Set overage, tokens in the metered quota fields, not here." in response.get_data(as_text=True)
    for not_an_object in ('[{"tokens": 5}]', "2147483648"):
        wrong_shape = admin_client.post("/admin/plans/new/", data=dict(BASE, quotas=not_an_object))
        assert wrong_shape.status_code == 200 and "Enter a JSON object" in wrong_shape.get_data(as_text=True)
    assert saved(db_session) is None


def test_the_edit_form_shows_each_metered_quota_and_saves_a_switch_to_block(admin_client, db_session):
    plan = make_plan(code="gold", quotas={"tokens": 1_000, "minions": 2, "training_minutes": 60,
                                          "overage": {"training_minutes": {"per": 1, "cents": 10}}})
    db_session.commit()
    page = admin_client.get(f"/admin/plans/edit/?id={plan.id}").get_data(as_text=True)
    assert 'name="tokens_limit" type="text" value="1000"' in page or 'value="1000"' in page
    assert '<option selected value="overage">' in page.replace('selected="selected"', "selected") or \
        'value="overage" selected' in page
    assert "&#34;minions&#34;: 2" in page and "&#34;tokens&#34;" not in page, "the JSON holds the other quotas only"

    form = dict(BASE, code="gold", quotas='{"minions": 2}', tokens_limit="1000", training_minutes_limit="60",
                training_minutes_at_limit="block", lock_version=str(plan.lock_version))
    assert admin_client.post(f"/admin/plans/edit/?id={plan.id}", data=form).status_code == 302
    assert saved(db_session).quotas == {"tokens": 1_000, "minions": 2, "training_minutes": 60}
