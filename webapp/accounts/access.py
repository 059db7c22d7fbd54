"""Who may do what: the Flask-Login wiring and the one permission check.

Every protected view declares its permission where its route is declared::

    @bp.get("/users/<int:user_id>")
    @permission_required("users.read")
    def user_detail(user_id): ...

``@permission_required()`` with no code only requires a signed-in user.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps

from flask import Flask, abort, make_response, redirect, request, url_for
from flask_login import AnonymousUserMixin, current_user
from webapp.accounts.models import User
from webapp.accounts.sessions import resume_session
from webapp.errors import error_response
from webapp.extensions import login_manager


def permission_codes(user: User) -> frozenset[str]:
    return user.permission_codes()


def has_permission(user, code: str) -> bool:
    return bool(user.is_authenticated) and user.has_permission(code)


class AnonymousUser(AnonymousUserMixin):
    def has_permission(self, code: str) -> bool:
        return False


def sign_in_redirect():
    """Anonymous visitors go to sign-in; an HTMX request is told to navigate, not swap a form in."""
    target = url_for("accounts.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if request.headers.get("HX-Request"):
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def permission_required(*codes: str) -> Callable:
    """Require a signed-in user holding every one of ``codes`` (403 otherwise)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return sign_in_redirect()
            if not all(has_permission(current_user, code) for code in codes):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_permissions = codes
        return wrapped

    return decorator


login_required = permission_required()

UNVERIFIED_MESSAGE = ("Confirm your email address first: training jobs and provider calls open once it is "
                      "confirmed. The banner at the top of the page sends a new link.")


def verified_email_required(view: Callable) -> Callable:
    """Refuse (403) costly work to a signed-in user whose email address is not confirmed yet.

    Goes below ``@login_required``::

        @bp.post("/jobs/new")
        @login_required
        @verified_email_required
        def job_create(): ...
    """

    @wraps(view)
    def wrapped(*args, **kwargs):
        if current_user.is_authenticated and current_user.email_verified_at is None:
            return error_response(403, UNVERIFIED_MESSAGE)
        return view(*args, **kwargs)

    return wrapped


def init_app(app: Flask) -> None:
    login_manager.anonymous_user = AnonymousUser
    login_manager.user_loader(resume_session)
    login_manager.unauthorized_handler(sign_in_redirect)
    login_manager.session_protection = None  # the server-side session row is the protection
    app.config.setdefault("REMEMBER_COOKIE_HTTPONLY", True)
    app.config.setdefault("REMEMBER_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("REMEMBER_COOKIE_SECURE", app.config["SESSION_COOKIE_SECURE"])
    app.config.setdefault(
        "REMEMBER_COOKIE_DURATION", timedelta(hours=app.config["SESSION_ABSOLUTE_LIFETIME_HOURS"])
    )
    app.jinja_env.globals["has_permission"] = lambda code: has_permission(current_user, code)
