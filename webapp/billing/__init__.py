from flask import Blueprint

from webapp.extensions import csrf

bp = Blueprint("billing", __name__)
# Stripe signs each event it posts; there is no session, so no CSRF token to check.
webhooks_bp = Blueprint("billing_webhooks", __name__)
csrf.exempt(webhooks_bp)

from webapp.billing import views  # noqa: E402,F401
