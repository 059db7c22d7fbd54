"""Authorization matrix rows for the leaderboard."""
from tests.authz import Route, World, same_for_signed_in


def routes(world: World) -> list[Route]:
    return [Route("GET", "/leaderboard", "/leaderboard", same_for_signed_in("login", "ok"))]
