"""What every bearer-token JSON API shares (the runner API, the metering API): the token from the
request, the 401 answer, and the database column lengths that bound a body's strings."""
from __future__ import annotations

from typing import Any

from flask import request

from webapp.errors import error_response


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def unauthorized(realm: str, what: str):
    """401 for a missing, unknown or deactivated token: ``what`` names the token the API wants."""
    response = error_response(401, f"A valid {what} is required: Authorization: Bearer <token>.")
    response.headers["WWW-Authenticate"] = f'Bearer realm="{realm}"'
    return response


def column_length(column: Any) -> int:
    """The declared length of a model's String column: the most a body may put in it."""
    return column.property.columns[0].type.length
