"""Authorization matrix rows for subscription management: own pages, and staff pages behind billing.manage."""
from __future__ import annotations

from tests.authz import Route, World, same_for_signed_in
from tests.factories import make_payment, make_plan
from webapp.billing.models import CheckoutSession
from webapp.extensions import db

SIGNED_IN_OK = same_for_signed_in("login", "ok")
# Every role reaches the view; a change nobody's subscription allows is refused the same way.
SIGNED_IN_REFUSED = same_for_signed_in("login", 422)
STAFF_OK = {"anonymous": "login", "user": 403, "support": 403, "admin": "ok"}
STAFF_REFUSED = {"anonymous": "login", "user": 403, "support": 403, "admin": 422}
# The signed-in user's own record: everyone else is told it does not exist.
OWNER_ONLY = {"anonymous": "login", "user": "ok", "support": 404, "admin": 404}
REFUNDERS = {"anonymous": "login", "user": 403, "support": "ok", "admin": "ok"}
OWN = "/account/subscription"
STAFF = "/billing/users/<int:user_id>/subscription"


def routes(world: World) -> list[Route]:
    plan = make_plan(price_cents=1500)
    theirs = f"/billing/users/{world.other.id}/subscription"
    unknown_plan = {"plan": "no-such-plan"}
    own_payment, their_payment = make_payment(world.user), make_payment(world.other)
    checkout = CheckoutSession(user_id=world.user.id, plan_id=plan.id, session_ref="cs_test_authz")
    db.session.add(checkout)
    db.session.flush()
    rows = [
        Route("GET", f"{OWN}/payments/<int:payment_id>/invoice", f"{OWN}/payments/{own_payment.id}/invoice",
              OWNER_ONLY),
        Route("GET", f"{STAFF}/payments/<int:payment_id>/invoice", f"{theirs}/payments/{their_payment.id}/invoice",
              STAFF_OK),
        Route("GET", f"{OWN}/checkout/return", f"{OWN}/checkout/return?session_id={checkout.session_ref}",
              OWNER_ONLY),
        # Card payments are not configured in the tests' app: a clear refusal, nothing opened.
        Route("POST", f"{OWN}/payment-methods", f"{OWN}/payment-methods", SIGNED_IN_REFUSED),
        Route("GET", "/billing/payments/<int:payment_id>/refund", f"/billing/payments/{their_payment.id}/refund",
              REFUNDERS),
        Route("POST", "/billing/payments/<int:payment_id>/refund", f"/billing/payments/{their_payment.id}/refund",
              REFUNDERS, data={"amount": "1.00"}),
        # Anyone may post; only a body signed with the endpoint's secret is read.
        Route("POST", "/webhooks/stripe", "/webhooks/stripe", same_for_signed_in(400, 400),
              json={"id": "evt_1", "type": "invoice.paid"}),
    ]
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
