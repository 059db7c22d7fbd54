"""Authorization matrix rows for the leaderboard and users' own minions."""
from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_minion

# Only the owner changes a minion: anyone else, staff included, gets a 404 on these routes.
OWNER_ONLY = same_for_signed_in("login", 404)


def routes(world: World) -> list[Route]:
    theirs = make_minion(world.other)
    archived = make_minion(world.other, status="retired")
    base = f"/minions/{theirs.id}"
    return [
        Route("GET", "/leaderboard", "/leaderboard", same_for_signed_in("login", "ok")),
        Route("GET", "/minions", "/minions", same_for_signed_in("login", "ok")),
        # An empty create form is refused with its errors.
        Route("POST", "/minions", "/minions", same_for_signed_in("login", 422)),
        # Every signed-in user may open any minion's public page.
        Route("GET", "/minions/<int:minion_id>", base, same_for_signed_in("login", "ok")),
        Route("POST", "/minions/<int:minion_id>/edit", f"{base}/edit", OWNER_ONLY, data={"name": "Taken over"}),
        Route("GET", "/minions/<int:minion_id>/archive", f"{base}/archive", OWNER_ONLY),
        Route("POST", "/minions/<int:minion_id>/archive", f"{base}/archive", OWNER_ONLY),
        Route("POST", "/minions/<int:minion_id>/restore", f"/minions/{archived.id}/restore", OWNER_ONLY),
        Route("GET", "/minions/<int:minion_id>/delete", f"{base}/delete", OWNER_ONLY),
        Route("POST", "/minions/<int:minion_id>/delete", f"{base}/delete", OWNER_ONLY),
    ]
