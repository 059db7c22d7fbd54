"""Admin test helpers: a signed-in admin client and the registered admin views."""
from __future__ import annotations

import pytest

from tests.conftest import login
from tests.factories import make_user
from webapp.admin.base import SecureModelView


def model_views(app) -> list[SecureModelView]:
    return [view for view in app.extensions["admin"][0]._views if isinstance(view, SecureModelView)]


def view_by_endpoint(app, endpoint: str):
    return next(view for view in app.extensions["admin"][0]._views if view.endpoint == endpoint)


@pytest.fixture
def admin_user(db_session):
    return make_user("admin")


@pytest.fixture
def admin_client(client, admin_user):
    login(client, admin_user)
    return client
