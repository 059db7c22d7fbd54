"""Authorization matrix rows for the support console: staff only, each action its permission."""
from __future__ import annotations

from tests.authz import Route, World
from tests.factories import make_session

STAFF_ONLY = {"anonymous": "login", "user": 403, "support": "ok", "admin": "ok"}


def routes(world: World) -> list[Route]:
    target = world.other
    session_id = make_session(target).id
    user_url = f"/support/users/{target.id}"
    actions = [
        ("/password-reset", "/password-reset"),
        ("/verification", "/verification"),
        ("/tokens/expire", "/tokens/expire"),
        ("/sessions/<int:session_id>/revoke", f"/sessions/{session_id}/revoke"),
        ("/sessions/revoke", "/sessions/revoke"),
        ("/lock", "/lock"),
        ("/unlock", "/unlock"),
    ]
    return [
        Route("GET", "/support/users", "/support/users?q=example", STAFF_ONLY),
        Route("GET", "/support/users/<int:user_id>", user_url, STAFF_ONLY),
        *(Route("POST", "/support/users/<int:user_id>" + rule, user_url + url, STAFF_ONLY) for rule, url in actions),
    ]
