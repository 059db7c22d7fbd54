from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from webapp.accounts import bp, profile, services
from webapp.accounts.access import login_required
from webapp.accounts.audit import change_text
from webapp.accounts.forms import (
    EmailChangeForm, NewPasswordForm, PasswordChangeForm, PasswordRequestForm, ProfileForm, SignInForm,
    UsageAlertsForm,
)
from webapp.accounts.passwords import verify_password
from webapp.accounts.sessions import device_name, end_session_by_token, start_session
from webapp.accounts.tokens import EMAIL_VERIFICATION, PASSWORD_RESET, usable_token
from webapp.extensions import db, limiter
from webapp.htmx import is_htmx, render_page_or_block
from webapp.mail import after_response

SIGN_IN_FAILED = (
    "That email and password did not match an account that can sign in right now. "
    "Check them, wait a few minutes if you tried several times, or reset your password."
)
RESET_REQUESTED = (
    "If that address belongs to an account, a link to reset its password is on its way. "
    "It works once and expires soon; check your spam folder if nothing arrives."
)

bp.add_app_template_filter(device_name, "device_name")
bp.add_app_template_filter(change_text, "change")


def safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and urlsplit(target).netloc == "":
        return target
    return url_for("home.index")


def auth_rate_limit() -> str:
    return current_app.config["AUTH_RATE_LIMIT"]


def link_unusable():
    """The page for a token link that is unknown, used or expired (the three look alike)."""
    return render_template("accounts/link_unusable.html"), 410


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(auth_rate_limit, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = SignInForm()
    if form.validate_on_submit():
        user = services.authenticate(form.email.data, form.password.data, request.remote_addr)
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


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(auth_rate_limit, methods=["POST"])
def password_forgot():
    form = PasswordRequestForm()
    if form.validate_on_submit():
        email, address = form.email.data, request.remote_addr
        after_response(lambda: services.request_password_reset(email, address))
        flash(RESET_REQUESTED, "info")
        return redirect(url_for("accounts.password_forgot"))
    return render_template("accounts/password_forgot.html", form=form)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(auth_rate_limit, methods=["POST"])
def password_reset(token: str):
    if usable_token(token, PASSWORD_RESET) is None:
        return link_unusable()
    form = NewPasswordForm()
    if form.validate_on_submit():
        if services.reset_password(token, form.password.data) is None:
            return link_unusable()
        logout_user()
        session.clear()
        flash("Your password is changed and every session is signed out. Sign in with the new password.", "success")
        return redirect(url_for("accounts.login"))
    return render_template("accounts/password_reset.html", form=form), 422 if form.errors else 200


@bp.route("/verify-email/<token>", methods=["GET", "POST"])
def email_verify(token: str):
    # The link opens a page with a button: mail scanners that prefetch links must not spend the token.
    pending = usable_token(token, EMAIL_VERIFICATION)
    if pending is None:
        return link_unusable()
    if request.method == "POST":
        services.verify_email(token)
        flash("Thank you: your email address is confirmed.", "success")
        return redirect(url_for("accounts.account" if current_user.is_authenticated else "accounts.login"))
    return render_template("accounts/email_verify.html", email=pending.user.email)


# --- the account page --------------------------------------------------------------


def account_context(**extra) -> dict:
    return {
        "sessions": services.active_sessions(current_user),
        "current_session_id": current_user.session_id,
        "password_form": extra.pop("password_form", None) or PasswordChangeForm(formdata=None),
        "profile_form": extra.pop("profile_form", None) or ProfileForm(formdata=None, obj=current_user),
        "email_form": extra.pop("email_form", None) or EmailChangeForm(formdata=None),
        "alerts_form": extra.pop("alerts_form", None)
        or UsageAlertsForm(formdata=None, muted=list(current_user.muted_usage_alerts)),
        **extra,
    }


@bp.post("/account/profile")
@login_required
def profile_update():
    form = ProfileForm()
    if form.validate_on_submit():
        profile.update_profile(current_user.record(), form.display_name.data.strip(), form.time_zone.data)
        flash("Your profile is saved.", "success")
        return redirect(url_for("accounts.account"))
    return render_template("accounts/account.html", **account_context(profile_form=form)), 422


@bp.post("/account/usage-alerts")
@login_required
def usage_alerts_update():
    form = UsageAlertsForm()
    if form.validate_on_submit():
        profile.update_usage_alerts(current_user.record(), form.muted())
        flash("Your usage alerts are saved.", "success")
        return redirect(url_for("accounts.account", _anchor="usage-alerts"))
    return render_template("accounts/account.html", **account_context(alerts_form=form)), 422


@bp.post("/account/email")
@login_required
@limiter.limit(auth_rate_limit)
def email_change_request():
    form = EmailChangeForm()
    if form.validate_on_submit():
        new_email = form.email.data.strip()
        user = current_user.record()
        if not verify_password(user.password_hash, form.current_password.data):
            form.current_password.errors.append("That is not your current password.")
        elif new_email.lower() == user.email.lower():
            form.email.errors.append("That is already your address.")
        elif profile.email_taken(new_email, user):
            form.email.errors.append("Another account uses that address.")
        else:
            profile.request_email_change(user, new_email)
            flash(f"A confirmation link is on its way to {new_email}. Your address changes once you open it.", "info")
            return redirect(url_for("accounts.account"))
    return render_template("accounts/account.html", **account_context(email_form=form)), 422


@bp.route("/account/email/confirm/<token>", methods=["GET", "POST"])
def email_change_confirm(token: str):
    # As with verification links, opening the link shows a button: a mail scanner's prefetch changes nothing.
    change = profile.pending_email_change(token)
    if change is None:
        return link_unusable()
    if request.method == "POST":
        profile.confirm_email_change(change)
        flash(f"Your email address is now {change.new_email}.", "success")
        return redirect(url_for("accounts.account" if current_user.is_authenticated else "accounts.login"))
    return render_template("accounts/email_change_confirm.html", change=change)


@bp.get("/account")
@login_required
def account():
    return render_template("accounts/account.html", **account_context())


@bp.post("/account/password")
@login_required
@limiter.limit(auth_rate_limit)
def password_change():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if services.change_password(current_user.record(), form.current_password.data, form.password.data,
                                    keep_session_id=current_user.session_id):
            message = "Your password is changed. Your other sessions are signed out."
            if not is_htmx():
                flash(message, "success")
                return redirect(url_for("accounts.account"))
            return render_page_or_block("accounts/account.html", "password_form",
                                        **account_context(password_changed=message))
        form.current_password.errors.append("That is not your current password.")
    return render_page_or_block("accounts/account.html", "password_form", status=422,
                                **account_context(password_form=form))


@bp.post("/account/verification")
@login_required
@limiter.limit(auth_rate_limit)
def verification_send():
    if current_user.email_verified_at is not None:
        flash("Your email address is already confirmed.", "info")
    else:
        services.send_verification(current_user.record())
        flash(f"A confirmation link is on its way to {current_user.email}.", "info")
    return redirect(url_for("accounts.account"))


def sessions_changed(message: str):
    """The session list again (HTMX) or the account page (plain form post)."""
    if is_htmx():
        return render_page_or_block("accounts/account.html", "session_list", **account_context(sessions_message=message))
    flash(message, "success")
    return redirect(url_for("accounts.account"))


@bp.post("/account/sessions/<int:session_id>/revoke")
@login_required
def session_revoke(session_id: int):
    # Scoped to the signed-in user: another user's session id is simply not found.
    if not services.revoke_session(current_user.record(), session_id, actor=current_user):
        abort(404)
    return sessions_changed("That session is signed out.")


@bp.post("/account/sessions/revoke-others")
@login_required
def sessions_revoke_others():
    ended = services.revoke_all_sessions(current_user.record(), actor=current_user, keep_session_id=current_user.session_id)
    return sessions_changed(f"Signed out {ended} other session{'s' if ended != 1 else ''}.")
