"""Authorization matrix rows for subscription management: own pages, and staff pages behind billing.manage."""
from __future__ import annotations

from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_plan

SIGNED_IN_OK = same_for_signed_in("login", "ok")
# Every role reaches the view; a change nobody's subscription allows is refused the same way.
SIGNED_IN_REFUSED = same_for_signed_in("login", 422)
STAFF_OK = {"anonymous": "login", "user": 403, "support": 403, "admin": "ok"}
STAFF_REFUSED = {"anonymous": "login", "user": 403, "support": 403, "admin": 422}
OWN = "/account/subscription"
STAFF = "/billing/users/<int:user_id>/subscription"


def routes(world: World) -> list[Route]:
    plan = make_plan(price_cents=1500)
    theirs = f"/billing/users/{world.other.id}/subscription"
    unknown_plan = {"plan": "no-such-plan"}
    rows = []
    for prefix, url, ok, refused in ((OWN, OWN, SIGNED_IN_OK, SIGNED_IN_REFUSED),
                                     (STAFF, theirs, STAFF_OK, STAFF_REFUSED)):
        rows += [
            Route("GET", prefix, url, ok),
            Route("GET", f"{prefix}/payments", f"{url}/payments", ok),
            Route("GET", f"{prefix}/change", f"{url}/change?plan={plan.code}", ok),
            Route("POST", f"{prefix}/change", f"{url}/change", refused, data=unknown_plan),
            Route("POST", f"{prefix}/downgrade/call-off", f"{url}/downgrade/call-off", refused),
            Route("POST", f"{prefix}/cancel", f"{url}/cancel", refused),
            Route("POST", f"{prefix}/resume", f"{url}/resume", refused),
        ]
    # Each signed-in user dismisses only their own alerts (nothing to dismiss is fine too).
    rows.append(Route("POST", "/account/usage-alerts/dismiss", "/account/usage-alerts/dismiss", SIGNED_IN_OK))
    return rows
