from flask import Blueprint

from webapp.extensions import csrf

bp = Blueprint("training", __name__)
# The runners' JSON API: a bearer token authenticates each request, so there is no CSRF cookie to protect.
api_bp = Blueprint("runner_api", __name__, url_prefix="/api/runner")
csrf.exempt(api_bp)

from webapp.training import api, views  # noqa: E402,F401
