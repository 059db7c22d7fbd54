"""Talking to a provider's model-list endpoint: one GET through the checked egress, one deadline, no redirects."""
from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from webapp.providers.egress import EgressRefused, provider_http_client

MAX_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class RequestStyle:
    """Where an API style lists its models and how it expects the key."""

    path: str
    key_header: str
    key_prefix: str = ""
    extra_headers: tuple[tuple[str, str], ...] = ()


REQUEST_STYLES = {
    "openai": RequestStyle("/models", "Authorization", "Bearer "),
    "anthropic": RequestStyle("/v1/models", "x-api-key", extra_headers=(("anthropic-version", "2023-06-01"),)),
    "google": RequestStyle("/models", "x-goog-api-key"),
    "custom": RequestStyle("/models", "Authorization", "Bearer "),
}


class ProviderError(Exception):
    """The provider could not be reached or refused the request; the text may echo the key."""


def models_url(api_style: str, base_url: str) -> str:
    return base_url.rstrip("/") + REQUEST_STYLES.get(api_style, REQUEST_STYLES["custom"]).path


def list_models(api_style: str, base_url: str, api_key: str, timeout: float) -> list[str]:
    """The model ids the provider lists for ``api_key``; raises ProviderError on any failure."""
    style = REQUEST_STYLES.get(api_style, REQUEST_STYLES["custom"])
    headers = {"Accept": "application/json", style.key_header: style.key_prefix + api_key, **dict(style.extra_headers)}
    timeout = min(timeout, MAX_TIMEOUT_SECONDS)
    try:
        with provider_http_client(timeout) as client, \
                client.stream("GET", models_url(api_style, base_url), headers=headers) as response:
            body = read_capped(response)
    except EgressRefused as error:
        raise ProviderError(f"cannot connect: {error}") from None
    except httpx.TimeoutException:
        raise ProviderError(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as error:
        raise ProviderError(f"cannot connect ({error.__class__.__name__})") from None
    if response.is_redirect:
        raise ProviderError(f"HTTP {response.status_code}: redirects are not followed; use the final URL as the base URL")
    if response.status_code >= 400:
        raise ProviderError(f"HTTP {response.status_code}: {error_detail(body)}")
    return model_ids(body)


def read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= MAX_RESPONSE_BYTES:
            break
    return bytes(body[:MAX_RESPONSE_BYTES])


def model_ids(body: bytes) -> list[str]:
    """Model ids from an OpenAI/Anthropic (``data[].id``) or Google (``models[].name``) list."""
    try:
        document = json.loads(body)
        entries = document.get("data") if "data" in document else document["models"]
        return [str(entry.get("id") or entry.get("name")) for entry in entries]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProviderError("the answer is not a model list") from None


def error_detail(body: bytes) -> str:
    """The provider's own error message from a JSON error answer, printable and short; nothing else of the body."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str):
        return "no details"
    printable = "".join(character if character.isprintable() else " " for character in message)
    return " ".join(printable.split())[:MAX_ERROR_CHARS] or "no details"
