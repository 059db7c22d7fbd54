"""Talking to a provider's model-list endpoint: one GET, a hard timeout, no cross-host redirects."""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_ERROR_CHARS = 300


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


def origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects on the same scheme and host only, so the key never travels elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if origin(newurl) != origin(req.full_url):
            raise ProviderError(f"HTTP {code}: redirected to another host ({urlsplit(newurl).netloc}); not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


OPENER = urllib.request.build_opener(SameOriginRedirects)


def models_url(api_style: str, base_url: str) -> str:
    return base_url.rstrip("/") + REQUEST_STYLES.get(api_style, REQUEST_STYLES["custom"]).path


def list_models(api_style: str, base_url: str, api_key: str, timeout: float) -> list[str]:
    """The model ids the provider lists for ``api_key``; raises ProviderError on any failure."""
    style = REQUEST_STYLES.get(api_style, REQUEST_STYLES["custom"])
    request = urllib.request.Request(models_url(api_style, base_url), method="GET")
    request.add_header("Accept", "application/json")
    request.add_header(style.key_header, style.key_prefix + api_key)
    for name, value in style.extra_headers:
        request.add_header(name, value)
    try:
        with OPENER.open(request, timeout=min(timeout, MAX_TIMEOUT_SECONDS)) as response:
            body = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as error:
        raise ProviderError(f"HTTP {error.code}: {error_detail(error.read(MAX_RESPONSE_BYTES))}") from None
    except TimeoutError:
        raise ProviderError(f"no answer within {min(timeout, MAX_TIMEOUT_SECONDS):g} s") from None
    except urllib.error.URLError as error:
        reason = "timed out" if isinstance(error.reason, TimeoutError) else str(error.reason)
        raise ProviderError(f"cannot connect: {reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise ProviderError(f"cannot connect: {error.__class__.__name__}") from None
    return model_ids(body)


def model_ids(body: bytes) -> list[str]:
    """Model ids from an OpenAI/Anthropic (``data[].id``) or Google (``models[].name``) list."""
    try:
        document = json.loads(body)
        entries = document.get("data") if "data" in document else document["models"]
        return [str(entry.get("id") or entry.get("name")) for entry in entries]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProviderError("the answer is not a model list") from None


def error_detail(body: bytes) -> str:
    """The provider's own error message when it sends one, else the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    return (message or text or "no details").strip()[:MAX_ERROR_CHARS]
