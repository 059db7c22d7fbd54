"""Hostile walk: the metering API needs a service token to reach its views."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_ai_model, make_metering_token
from tests.hostile import Fields
from webapp.db import utcnow

EVENTS = "/api/usage/events"
ALLOWANCE = "/api/usage/allowance"


def bases(world: World) -> list[Route]:
    _, token = make_metering_token()
    bearer = {"Authorization": f"Bearer {token}"}
    event = {"id": "hostile-base", "user_id": world.other.id, "model": make_ai_model().id, "metric": "requests",
             "quantity": 1, "occurred_at": utcnow().isoformat()}
    return [
        Route("POST", EVENTS, EVENTS, same_for_signed_in("ok", "ok"), headers=bearer, json={"events": [event]}),
        Route("GET", ALLOWANCE, f"{ALLOWANCE}?user_id={world.other.id}", same_for_signed_in("ok", "ok"),
              headers=bearer),
    ]


def extra_fields(world: World) -> dict[tuple[str, str], Fields]:
    return {("POST", EVENTS): Fields(json=("events",)), ("GET", ALLOWANCE): Fields(query=("user_id",))}
