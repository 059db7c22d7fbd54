"""Authorization matrix rows for the home page."""
from __future__ import annotations

from tests.authz import Route, World, same_for_signed_in


def routes(world: World) -> list[Route]:
    return [Route("GET", "/", "/", same_for_signed_in("login", "ok"))]
