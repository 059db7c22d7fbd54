"""Sign-up: a visitor makes an account on the sign-up plan.

Above billing in the layers (a new account starts on a plan), beside home.
"""
from flask import Blueprint

bp = Blueprint("signup", __name__)

from webapp.signup import views  # noqa: E402,F401
