"""Billing fixtures: an app whose requests commit for real, and the console paying through a local fake Stripe."""
from __future__ import annotations

import pytest
import stripe

from tests.billing.fake_stripe import SECRET_KEY, FakeStripe
from tests.conftest import app_of_its_own
from tests.factories import make_plan


@pytest.fixture
def race_app(backend, tmp_path):
    """An app with its own database, where each request commits for real."""
    with app_of_its_own(backend, tmp_path, "_race") as app:
        yield app


@pytest.fixture
def fake_stripe(app, monkeypatch):
    """Stripe configured, its API answered by a fake on this machine."""
    with FakeStripe() as server:
        monkeypatch.setattr(stripe, "api_base", server.url(""))
        monkeypatch.setitem(app.config, "STRIPE_SECRET_KEY", SECRET_KEY)
        yield server


@pytest.fixture
def card_plans(db_session, fake_stripe):
    """Free, and Pro and Team with their Stripe prices."""
    return {"free": make_plan("free", 0, sort_order=0),
            "pro": make_plan("pro", 2900, sort_order=1, stripe_price_id=fake_stripe.add_price(2900)),
            "team": make_plan("team", 9900, sort_order=2, stripe_price_id=fake_stripe.add_price(9900))}
