"""SSRF: provider base URLs and "Test connection" reach public addresses only (or allowlisted hosts),
connect to the address they checked, follow no redirect, and stop at one total deadline."""
from __future__ import annotations

import socket
import time

import pytest

from tests.factories import make_provider, make_provider_config, make_user
from tests.providers.fake_provider import DRIP_BYTES, DRIP_SECONDS, GOOD_KEY, MODELS
from webapp.providers import egress
from webapp.providers.client import ProviderError, list_models
from webapp.providers.services import normalise_base_url, verify_connection

REFUSED_HOSTS = [
    "127.0.0.1", "127.0.0.1:8080", "127.1", "2130706433", "0x7f.0.0.1", "localhost", "[::1]",
    "169.254.169.254", "[fe80::1]", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "[fc00::1]",
    "0.0.0.0", "[::]", "224.0.0.1", "[ff02::1]", "240.0.0.1", "255.255.255.255",
    "[::ffff:a9fe:a9fe]", "[::ffff:127.0.0.1]", "[2002:7f00:1::]", "198.51.100.7",
]
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def no_allowlist(app, monkeypatch):
    monkeypatch.setitem(app.config, "PROVIDER_HOST_ALLOWLIST", [])


@pytest.fixture
def resolver(monkeypatch):
    """Names under .test resolve to what the test says (a list is used up one answer per lookup)."""
    answers: dict[str, list[str]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host in answers:
            lookups.append(host)
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            return REAL_GETADDRINFO(address, port, *args, **kwargs)
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_base_url_on_a_non_public_address_is_refused(app, no_allowlist, host):
    with app.app_context(), pytest.raises(ValueError, match="only public addresses can be used"):
        normalise_base_url(f"https://{host}/v1")


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_test_connection_refuses_a_stored_non_public_address_without_connecting(
        app, db_session, no_allowlist, fake_provider, monkeypatch, host):
    connections = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a) or 1 / 0)
    config = make_provider_config(make_user(), make_provider(), api_key=GOOD_KEY, base_url=f"https://{host}/v1")
    kind, message = verify_connection(config, timeout=2)
    assert kind == "error" and config.last_error.startswith("cannot connect: the host is ")
    assert "only public addresses can be used" in config.last_error and len(config.last_error) < 120
    assert connections == [], "nothing was connected to"


def test_the_fake_providers_own_port_is_refused_once_it_is_off_the_allowlist(
        app, db_session, fake_provider, no_allowlist):
    before = len(fake_provider.requests)
    config = make_provider_config(make_user(), make_provider(), api_key=GOOD_KEY, base_url=fake_provider.url("/v1"))
    kind, _ = verify_connection(config, timeout=2)
    assert kind == "error" and "a loopback address" in config.last_error
    assert len(fake_provider.requests) == before


def test_an_allowlisted_name_is_connected_to_at_the_address_resolved_once(
        app, db_session, fake_provider, resolver, monkeypatch):
    answers, lookups = resolver
    answers["models.test"] = ["127.0.0.1"]
    port = fake_provider.server.server_port
    monkeypatch.setitem(app.config, "PROVIDER_HOST_ALLOWLIST", [f"models.test:{port}"])
    connected = []
    real_create_connection = socket.create_connection
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, *a, **k: connected.append(address) or real_create_connection(address, *a, **k))
    with app.app_context():
        assert list_models("openai", f"http://models.test:{port}/v1", GOOD_KEY, 5) == MODELS
    assert lookups == ["models.test"] and connected == [("127.0.0.1", port)]
    assert fake_provider.requests[-1][1]["Host"] == f"models.test:{port}", "the URL's host name is kept"


def test_dns_rebinding_gains_nothing(app, db_session, fake_provider, resolver, no_allowlist):
    """Public when the URL is saved, loopback when connecting: the connection checks what it connects to."""
    answers, lookups = resolver
    answers["rebind.test"] = ["93.184.216.34", "127.0.0.1"]
    port = fake_provider.server.server_port
    before = len(fake_provider.requests)
    with app.app_context():
        url = normalise_base_url(f"https://rebind.test:{port}/v1")
    config = make_provider_config(make_user(), make_provider(), api_key=GOOD_KEY, base_url=url)
    kind, _ = verify_connection(config, timeout=2)
    assert kind == "error" and "a loopback address" in config.last_error
    assert lookups == ["rebind.test", "rebind.test"] and len(fake_provider.requests) == before


def test_one_deadline_bounds_the_whole_answer_not_each_read(app, fake_provider):
    """The drip answer sends a byte every 0.1 s: no single read waits long, the whole would take 5 s."""
    started = time.monotonic()
    with app.app_context(), pytest.raises(ProviderError, match=r"no answer within 0\.5 s"):
        list_models("openai", fake_provider.url("/drip"), GOOD_KEY, 0.5)
    assert time.monotonic() - started < DRIP_BYTES * DRIP_SECONDS / 2


def test_the_checked_transport_serves_any_httpx_client_such_as_openais(app, fake_provider):
    """The transport is what the openai client will be given as its http_client."""
    with app.app_context(), egress.provider_http_client(total_timeout=5) as client:
        response = client.get(fake_provider.url("/v1/models"), headers={"Authorization": f"Bearer {GOOD_KEY}"})
        assert response.status_code == 200
        with pytest.raises(egress.EgressRefused):
            client.get("http://127.0.0.1:9/v1/models")
        assert client.get(fake_provider.url("/moved/models")).status_code == 302, "redirects are not followed"


@pytest.mark.parametrize("address, public", [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
    ("127.0.0.2", False), ("::ffff:8.8.8.8", False), ("64:ff9b::a00:1", False), ("fe80::1%eth0", False),
])
def test_address_refusal(address, public):
    assert (egress.address_refusal(address) is None) is public
