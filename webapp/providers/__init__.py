"""Users' own provider settings: API keys (encrypted at rest), base URLs, connection tests."""
from flask import Blueprint

bp = Blueprint("providers", __name__, url_prefix="/account/providers")

from webapp.providers import views  # noqa: E402,F401
