"""The authorization matrix's vocabulary, shared by every domain's tests/<domain>/authz.py.

Each domain module defines ``routes(world) -> list[Route]``: for every URL rule it
registers, one or more concrete requests and the expected outcome per role.
tests/test_authorization_matrix.py collects them all and fails when a rule of
``app.url_map`` has no Route, so a new route is covered by itself.

Outcomes: "login" (redirected to sign-in, or 401 with HX-Redirect for HTMX),
"ok" (2xx, or a 3xx that is not to sign-in), or an exact status code (403, 404, 405, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("anonymous", "user", "support", "admin")


@dataclass
class World:
    """Signed-in users per role plus ``other``, a plain user nobody signs in as (for 404 checks)."""

    user: Any
    support: Any
    admin: Any
    other: Any


@dataclass
class Route:
    method: str
    rule: str  # exactly as in app.url_map, e.g. "/jobs/<int:job_id>"
    url: str  # the concrete URL requested
    expect: dict[str, int | str]  # role -> outcome, one entry per role in ROLES
    data: dict[str, Any] = field(default_factory=dict)  # form/JSON body for POSTs
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def __post_init__(self) -> None:
        missing = set(ROLES) - set(self.expect)
        assert not missing, f"{self.method} {self.rule}: no expectation for {sorted(missing)}"


def same_for_signed_in(anonymous: int | str, signed_in: int | str) -> dict[str, int | str]:
    return {"anonymous": anonymous, "user": signed_in, "support": signed_in, "admin": signed_in}
