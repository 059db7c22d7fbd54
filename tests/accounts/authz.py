"""Authorization matrix rows for sign-in, password reset, email verification and the account page."""
from __future__ import annotations

from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_session

EVERYONE_OK = same_for_signed_in("ok", "ok")
SIGNED_IN_OK = same_for_signed_in("login", "ok")
# A made-up token: every role sees the same "link no longer works" page.
UNUSABLE_LINK = same_for_signed_in(410, 410)


def routes(world: World) -> list[Route]:
    their_session_id = make_session(world.other).id
    return [
        Route("GET", "/login", "/login", EVERYONE_OK),
        # Wrong credentials re-show the form for visitors; signed-in users are sent on.
        Route("POST", "/login", "/login", EVERYONE_OK, data={"email": "nobody@example.test", "password": "x"}),
        # Signing out ends on the sign-in page, and so does a visitor's attempt.
        Route("POST", "/logout", "/logout", same_for_signed_in("login", "login")),
        Route("GET", "/password/forgot", "/password/forgot", EVERYONE_OK),
        Route("POST", "/password/forgot", "/password/forgot", EVERYONE_OK, data={"email": "nobody@example.test"}),
        Route("GET", "/password/reset/<token>", "/password/reset/not-a-token", UNUSABLE_LINK),
        Route("POST", "/password/reset/<token>", "/password/reset/not-a-token", UNUSABLE_LINK),
        Route("GET", "/verify-email/<token>", "/verify-email/not-a-token", UNUSABLE_LINK),
        Route("POST", "/verify-email/<token>", "/verify-email/not-a-token", UNUSABLE_LINK),
        Route("GET", "/account", "/account", SIGNED_IN_OK),
        # An empty form is refused with its errors, but only once signed in.
        Route("POST", "/account/password", "/account/password", same_for_signed_in("login", 422)),
        Route("POST", "/account/verification", "/account/verification", SIGNED_IN_OK),
        Route("POST", "/account/sessions/<int:session_id>/revoke", f"/account/sessions/{their_session_id}/revoke",
              same_for_signed_in("login", 404)),
        Route("POST", "/account/sessions/revoke-others", "/account/sessions/revoke-others", SIGNED_IN_OK),
        # An empty profile or email form is refused with its errors, but only once signed in.
        Route("POST", "/account/profile", "/account/profile", same_for_signed_in("login", 422)),
        Route("POST", "/account/email", "/account/email", same_for_signed_in("login", 422)),
        # An empty form is a valid answer (every box unticked: all alerts off).
        Route("POST", "/account/usage-alerts", "/account/usage-alerts", SIGNED_IN_OK),
        Route("GET", "/account/email/confirm/<token>", "/account/email/confirm/not-a-token", UNUSABLE_LINK),
        Route("POST", "/account/email/confirm/<token>", "/account/email/confirm/not-a-token", UNUSABLE_LINK),
    ]
