"""Authorization matrix rows for sign-up."""
from __future__ import annotations

from tests.authz import Route, World
from tests.factories import make_plan

# Visitors get the form; a signed-in user is sent home instead.
VISITORS_ONLY = {"anonymous": "ok", "user": "ok", "support": "ok", "admin": "ok"}


def routes(world: World) -> list[Route]:
    make_plan("free")  # the plan sign-up starts accounts on (SIGNUP_PLAN); without it sign-up is closed
    return [
        Route("GET", "/signup", "/signup", VISITORS_ONLY),
        # An empty form is refused with its errors; signed-in users are redirected before any check.
        Route("POST", "/signup", "/signup", {"anonymous": 422, "user": "ok", "support": "ok", "admin": "ok"}),
        Route("GET", "/signup/sent", "/signup/sent", VISITORS_ONLY),
    ]
