from flask import Blueprint

from webapp.extensions import csrf

# The metering JSON API (the inference gateway's): a service token authenticates each request, so no CSRF.
api_bp = Blueprint("metering_api", __name__, url_prefix="/api/usage")
csrf.exempt(api_bp)

from webapp.metering import api  # noqa: E402,F401
