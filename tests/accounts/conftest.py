import re

import pytest

from tests.conftest import app_of_its_own
from webapp.extensions import limiter
from webapp.mail import outbox


@pytest.fixture
def mailbox(app):
    """The memory mail backend's outbox, emptied for this test."""
    sent = outbox(app)
    sent.clear()
    yield sent
    sent.clear()


@pytest.fixture(scope="module")
def limited_app(backend, tmp_path_factory):
    """An app of its own with rate limiting on: Flask-Limiter only sets up for an app
    started with RATELIMIT_ENABLED, and the shared test app is not."""
    with app_of_its_own(backend, tmp_path_factory.mktemp("limits"), "_limits",
                        RATELIMIT_ENABLED=True, AUTH_RATE_LIMIT="3 per minute") as app:
        yield app
        limiter.enabled = False


@pytest.fixture
def limited_client(limited_app):
    """A client of ``limited_app`` with the limiter switched on and its counters empty."""
    limiter.enabled = True
    limiter.reset()
    yield limited_app.test_client()
    limiter.reset()
    limiter.enabled = False


def link_in(message, base_url: str = "http://console.test") -> str:
    """The one link of ``base_url`` in a captured mail message."""
    (link,) = re.findall(re.escape(base_url) + r"/\S+", message.get_content())
    return link


CSRF_VALUE = re.compile(r'(name="csrf_token" value="|"X-CSRFToken": ")[^"]+')


def without_csrf(html: bytes) -> str:
    """A page with its per-request CSRF values blanked (signed with the second they were made in),
    so two pages compare equal."""
    return CSRF_VALUE.sub(r"\1", html.decode())


def path_of(link: str, base_url: str = "http://console.test") -> str:
    return link[len(base_url):]
