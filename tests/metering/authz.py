"""Authorization matrix rows for the metering API: it knows no sessions, only service tokens."""
from tests.authz import Route, World, same_for_signed_in


def routes(world: World) -> list[Route]:
    return [
        Route("POST", "/api/usage/events", "/api/usage/events", same_for_signed_in(401, 401),
              json={"events": [{"id": "a", "user_id": world.other.id, "model": 1, "metric": "requests",
                                "quantity": 1, "occurred_at": "2026-12-01T00:00:00Z"}]}),
        Route("GET", "/api/usage/allowance", f"/api/usage/allowance?user_id={world.other.id}",
              same_for_signed_in(401, 401)),
    ]
