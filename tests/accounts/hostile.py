"""Hostile walk: form fields of POST-only account routes, whose empty matrix request reads none."""
from tests.authz import Route, World, same_for_signed_in
from tests.hostile import Fields

PASSWORD_FIELDS = Fields(form=("current_password", "password", "confirm"))


def bases(world: World) -> list[Route]:
    # Signing out ends on the sign-in page, which the matrix counts as "login"; the view did run.
    return [Route("POST", "/logout", "/logout", same_for_signed_in("login", "ok"))]


def extra_fields(world: World) -> dict[tuple[str, str], Fields]:
    return {
        ("POST", "/account/password"): PASSWORD_FIELDS,
        ("POST", "/password/reset/<token>"): PASSWORD_FIELDS,
        ("POST", "/login"): Fields(query=("next",), form=("email", "password", "remember")),
        ("GET", "/login"): Fields(query=("next",)),
        ("POST", "/account/usage-alerts"): Fields(form=("tokens", "requests", "training_minutes")),
    }
