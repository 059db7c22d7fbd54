from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from webapp.accounts import bp
from webapp.accounts.access import login_required
from webapp.accounts.forms import SignInForm
from webapp.accounts.services import authenticate
from webapp.accounts.sessions import end_session_by_token, start_session
from webapp.extensions import db, limiter

SIGN_IN_FAILED = (
    "That email and password did not match an account that can sign in right now. "
    "Check them, wait a few minutes if you tried several times, or reset your password."
)


def safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and urlsplit(target).netloc == "":
        return target
    return url_for("home.index")


def auth_rate_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(auth_rate_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = SignInForm()
    if form.validate_on_submit():
        user = authenticate(form.email.data, form.password.data)
        if user is None:
            flash(SIGN_IN_FAILED, "error")
            return render_template("accounts/login.html", form=form), 200
        # A fresh Flask session and a fresh session token at every sign-in.
        session.clear()
        start_session(user, request.remote_addr, request.user_agent.string)
        db.session.commit()
        login_user(user, remember=form.remember.data)
        return redirect(safe_next(request.args.get("next")))
    return render_template("accounts/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    end_session_by_token(current_user.session_token)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("accounts.login"))
