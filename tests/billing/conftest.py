"""Fixtures of the billing tests."""
from __future__ import annotations

import pytest

from tests.conftest import make_test_app
from webapp.extensions import db


@pytest.fixture
def race_app(backend, tmp_path):
    """An app with its own database, where each request commits for real."""
    app = make_test_app(backend, tmp_path, suffix="_race")
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
