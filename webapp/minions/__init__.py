from flask import Blueprint

bp = Blueprint("minions", __name__)

from webapp.minions import views  # noqa: E402,F401
