"""The official ``openai`` client for a user's provider config, and which providers can fine-tune through it."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from webapp.providers.egress import checked_transport_class, host_allowlist
from webapp.providers.models import AIModel, Provider, UserProviderConfig

if TYPE_CHECKING:
    from openai import OpenAI

# API styles that speak OpenAI's fine-tuning API (files, fine_tuning/jobs, events); "custom" is
# the style of OpenAI-compatible servers. Anthropic's and Google's APIs have no such endpoints.
FINE_TUNING_API_STYLES = ("openai", "custom")
FINE_TUNING_CAPABILITY = "fine_tuning"


@cache
def openai_checked_transport() -> type:
    """The checked egress over the openai library's own httpx (openai 3.x builds on httpx2 and
    httpcore2), whose client takes only its own transports."""
    import httpcore2
    import httpx2

    return checked_transport_class(httpx2, httpcore2)


def endpoint(config: UserProviderConfig) -> str:
    """The base URL requests for ``config`` go to: the user's override, else the provider's default."""
    return config.base_url or config.provider.default_base_url


def openai_client(config: UserProviderConfig, api_key: str, timeout: float) -> OpenAI:
    """A client for ``config``'s endpoint: every request has ``timeout``, none is retried or redirected.

    Retries are left to the caller, which knows what a failed step means. Redirects are not
    followed, so the key is only ever sent to the configured host, and connections go through the
    same checked egress as the connection test (public addresses or allowlisted hosts, pinned,
    one deadline per request). Use it in a ``with`` block, which closes its connections.
    """
    # Imported here, not at the top: the library takes a second to import, which every process
    # (web workers, Celery workers, CLI) would otherwise pay at start although few call a provider.
    from openai import DefaultHttpxClient, OpenAI

    client = OpenAI(
        api_key=api_key,
        base_url=endpoint(config),
        timeout=timeout,
        max_retries=0,
        http_client=DefaultHttpxClient(timeout=timeout, follow_redirects=False,
                                       transport=openai_checked_transport()(host_allowlist(), timeout)),
    )
    # The library fills these from OPENAI_* variables of the worker's environment, which
    # belong to the platform, not to this user's provider: none of them goes out.
    client.organization = client.project = client.admin_api_key = None
    return client


def supports_fine_tuning(provider: Provider) -> bool:
    """Whether jobs can fine-tune on ``provider`` through its OpenAI-compatible fine-tuning API."""
    return provider.api_style in FINE_TUNING_API_STYLES and FINE_TUNING_CAPABILITY in (provider.capabilities or [])


def fine_tuning_refusal(model: AIModel) -> str | None:
    """Why an external job cannot fine-tune ``model``, in words for the user; None when it can."""
    provider = model.provider
    if provider is None:
        return f"{model.name} has no provider to fine-tune it."
    if not supports_fine_tuning(provider):
        return (f"{provider.name} offers no fine-tuning through an OpenAI-compatible API, so {model.name} "
                "cannot be trained here; choose a model of a provider that does.")
    if FINE_TUNING_CAPABILITY not in (model.capabilities or []):
        return f"{provider.name} does not fine-tune {model.name}; choose one of its models that can be fine-tuned."
    return None
