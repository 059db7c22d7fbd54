import pytest

from tests.providers.fake_provider import FakeProvider


@pytest.fixture(scope="module")
def fake_provider(app):
    """The fake provider, on a loopback port the operator's allowlist names (nothing else on loopback)."""
    with FakeProvider() as provider:
        app.config["PROVIDER_HOST_ALLOWLIST"] = [provider.host]
        yield provider
        app.config["PROVIDER_HOST_ALLOWLIST"] = []


@pytest.fixture
def short_timeout(app):
    """Connection tests give up after a fraction of a second (the slow path answers after 2 s)."""
    app.config["PROVIDER_TEST_TIMEOUT_SECONDS"] = 0.5
    yield 0.5
    app.config.pop("PROVIDER_TEST_TIMEOUT_SECONDS")
