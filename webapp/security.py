"""Opaque tokens, and the security headers every response carries."""
from __future__ import annotations

import hashlib
import re
import secrets

from flask import Flask, g, request
from werkzeug.exceptions import SecurityError

HTMX_VERSION = "2.0.11"
HTMX_CDN_URL = f"https://cdn.jsdelivr.net/npm/htmx.org@{HTMX_VERSION}/dist/htmx.min.js"
HTMX_SRI = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"


def new_token() -> str:
    """A random opaque token for a cookie, a link or a runner (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the database keeps instead of a token: SHA-256 suffices for 256-bit random values."""
    return hashlib.sha256(token.encode()).hexdigest()


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def content_security_policy() -> str:
    return "; ".join([
        "default-src 'self'",
        # The one pinned file, not the whole CDN host (which serves anyone's packages).
        f"script-src 'self' {HTMX_CDN_URL} 'nonce-{csp_nonce()}'",
        # Inline style attributes (progress widths, Flask-Admin markup) are allowed; scripts are not.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: https:",
        "connect-src 'self'",
        "font-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "object-src 'none'",
    ])


def add_security_headers(response):
    response.headers.setdefault("Content-Security-Policy", content_security_policy())
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: CSRF checks over HTTPS compare the Referer.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # Pages and exports may hold a signed-in user's data: no browser or proxy keeps a copy.
    # Static files set their own Cache-Control, which is kept.
    response.headers.setdefault("Cache-Control", "no-store")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def redirect_without_control_characters(app: Flask):
    """Flask's redirect, with control characters in the target percent-encoded.

    A ``next`` or ``url`` parameter holding a newline must become a harmless URL, not a
    header that cannot be sent (Werkzeug refuses it, which would be a 500).
    """
    redirect = app.redirect

    def safe_redirect(location: str, code: int = 302):
        return redirect(CONTROL_CHARACTERS.sub(lambda m: f"%{ord(m.group()):02X}", location), code)

    return safe_redirect


def untrusted_host(error: SecurityError):
    # No URL can be built for a host outside TRUSTED_HOSTS, so no templated error page either.
    return "Bad request: this host is not served here.", 400, {"Content-Type": "text/plain; charset=utf-8"}


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
    app.redirect = redirect_without_control_characters(app)
    app.register_error_handler(SecurityError, untrusted_host)
    app.jinja_env.globals.update(
        csp_nonce=csp_nonce, htmx_cdn_url=HTMX_CDN_URL, htmx_sri=HTMX_SRI, htmx_version=HTMX_VERSION
    )
