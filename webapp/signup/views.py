from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user

from webapp.accounts.views import auth_rate_limit
from webapp.extensions import limiter
from webapp.signup import bp
from webapp.signup.forms import SignUpForm
from webapp.signup.services import SignUpUnavailable, sign_up, signup_plan


def submitted_email() -> str:
    """The per-address rate-limit key: the same address is limited whatever IP it comes from."""
    return "signup:" + (request.form.get("email") or "").strip().lower()


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(auth_rate_limit, methods=["POST"])
@limiter.limit(auth_rate_limit, methods=["POST"], key_func=submitted_email)
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    try:
        plan = signup_plan()
    except SignUpUnavailable as error:
        return render_template("signup/unavailable.html", message=str(error)), 404
    form = SignUpForm()
    if form.validate_on_submit():
        sign_up(form.email.data, form.display_name.data, form.password.data)
        return redirect(url_for("signup.signup_sent"))
    return render_template("signup/signup.html", form=form, plan=plan), 422 if form.errors else 200


@bp.get("/signup/sent")
def signup_sent():
    return render_template("signup/sent.html", hours=current_app.config["TOKEN_TTL_MINUTES"]["email_verification"] // 60)
