"""Outbound HTTP to providers: public addresses only (or hosts the operator allowed), pinned, one deadline.

Each new connection resolves its host once, refuses it unless every address is public, and
connects to an address it checked, so a name that resolves elsewhere a moment later (DNS
rebinding) gains nothing. No redirect is followed and no proxy is taken from the environment.
``total_timeout`` bounds a whole request (connecting, TLS, sending, every read of the answer),
not each socket read, so a server dripping one byte a second cannot hold a worker.

``PROVIDER_HOST_ALLOWLIST`` names hosts (``name`` or ``name:port``) that may be private, such
as a model server on the same machine; they are still connected to as resolved once.

The ``openai`` client gets the same rules through ``webapp.providers.openai_api.openai_client``.
"""
from __future__ import annotations

import contextvars
import ipaddress
import socket
import time
from collections.abc import Iterable

import httpcore
import httpx
from flask import current_app

# When the request being sent must be finished (time.monotonic()); set per request by the transport.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("provider_request_deadline", default=None)


class EgressRefused(Exception):
    """The destination is not allowed; the message says why in a few words."""


class HostUnresolvable(EgressRefused):
    """The host name has no address (now)."""


def address_refusal(address: str) -> str | None:
    """Why connecting to ``address`` is refused, or None for a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and (ip.ipv4_mapped or ip.sixtofour or ip.teredo):
        return "an IPv4 address inside an IPv6 one"
    for refused, name in (
        (ip.is_unspecified, "an unspecified address"), (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"), (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private network address"), (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "a non-public address"),
    ):
        if refused:
            return name
    return None


def host_key(host: str, port: int | None = None) -> str:
    """``host`` or ``host:port`` as the allowlist writes them (IPv6 in brackets)."""
    name = f"[{host}]" if ":" in host else host
    return name.lower() if port is None else f"{name.lower()}:{port}"


def is_allowlisted(host: str, port: int, allowlist: Iterable[str]) -> bool:
    allowed = set(allowlist)
    return host_key(host) in allowed or host_key(host, port) in allowed


def host_allowlist() -> list[str]:
    return current_app.config["PROVIDER_HOST_ALLOWLIST"]


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise HostUnresolvable("the host name cannot be resolved") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def checked_addresses(host: str, port: int, allowlist: Iterable[str]) -> list[str]:
    """The addresses ``host`` resolves to, once; EgressRefused if any of them is not public."""
    addresses = resolve(host, port)
    if is_allowlisted(host, port, allowlist):
        return addresses
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            raise EgressRefused(f"the host is {reason}; only public addresses can be used")
    return addresses


def checked_transport_class(httpx_library, httpcore_library):
    """The checked transport for one httpx and its httpcore: httpx's own, or the fork the ``openai`` library uses.

    The ``openai`` library (3.x) ships its own copies of httpx and httpcore (``httpx2``, ``httpcore2``),
    whose clients take only their own transports; both get the same rules from here.
    """

    def within_deadline(timeout: float | None) -> float | None:
        deadline = _deadline.get()
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpcore_library.ReadTimeout("the request's total deadline passed")
        return left if timeout is None else min(timeout, left)

    class DeadlineStream(httpcore_library.NetworkStream):
        """A network stream whose every operation ends by the request's deadline."""

        def __init__(self, stream) -> None:
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, within_deadline(timeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, within_deadline(timeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context, server_hostname: str | None = None, timeout: float | None = None):
            return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, within_deadline(timeout)))

        def get_extra_info(self, info: str):
            return self._stream.get_extra_info(info)

    class CheckedBackend(httpcore_library.SyncBackend):
        """Connects only to addresses that passed :func:`checked_addresses`; TLS still checks the host name."""

        def __init__(self, allowlist: Iterable[str]) -> None:
            self.allowlist = tuple(allowlist)

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            failure: Exception | None = None
            for address in checked_addresses(host, port, self.allowlist):
                try:
                    stream = super().connect_tcp(address, port, within_deadline(timeout), local_address,
                                                 socket_options)
                except httpcore_library.ConnectError as error:
                    failure = error
                    continue
                return DeadlineStream(stream)
            raise failure or httpcore_library.ConnectError("no address to connect to")

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            raise EgressRefused("unix sockets are not used for providers")

    class CheckedTransport(httpx_library.HTTPTransport):
        """httpx's transport over the checked backend, with one deadline per request."""

        def __init__(self, allowlist: Iterable[str], total_timeout: float, **kwargs) -> None:
            super().__init__(trust_env=False, **kwargs)
            # httpx takes no network backend of its own; its connection pool (httpcore) does.
            self._pool._network_backend = CheckedBackend(allowlist)
            self.total_timeout = total_timeout

        def handle_request(self, request):
            # The answer's body is read after this returns (in the same context), under the same deadline.
            _deadline.set(time.monotonic() + self.total_timeout)
            return super().handle_request(request)

    return CheckedTransport


CheckedTransport = checked_transport_class(httpx, httpcore)


def provider_http_client(total_timeout: float) -> httpx.Client:
    """An httpx client for provider APIs: checked and pinned addresses, no redirects, no proxies."""
    return httpx.Client(
        transport=CheckedTransport(host_allowlist(), total_timeout), follow_redirects=False, trust_env=False,
        timeout=total_timeout,
    )
