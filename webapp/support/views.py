from __future__ import annotations

from collections.abc import Callable

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from webapp.accounts import services as accounts
from webapp.accounts.access import has_permission, permission_required
from webapp.accounts.models import User
from webapp.accounts.tokens import outstanding_tokens
from webapp.db import utcnow
from webapp.htmx import is_htmx, render_page_or_block
from webapp.pagination import page_args
from webapp.support import bp, services
from webapp.support.panels import panels_for


@bp.get("/users")
@permission_required("users.read")
def user_search():
    query = request.args.get("q", "")
    results = services.search_users(query, *page_args())
    return render_page_or_block(
        "support/user_search.html", "results", query=query, results=results, now=utcnow(),
        page_url=lambda number: url_for("support.user_search", q=query or None, page=number),
    )


def staff_target(user_id: int) -> User:
    user = services.user_for_staff(user_id)
    if user is None:
        abort(404)
    return user


def user_page_context(user: User, **extra) -> dict:
    history = services.audit_history(user, *page_args()) if has_permission(current_user, "audit.read") else None
    return {
        "user": user,
        "sessions": accounts.active_sessions(user),
        "tokens": outstanding_tokens(user),
        "history": history,
        "may_act": services.may_act_on(current_user, user),
        "staff_locked": accounts.is_staff_locked(user),
        "locked": accounts.is_locked(user),
        "now": utcnow(),
        "history_url": lambda number: url_for("support.user_detail", user_id=user.id, page=number),
        "panels": panels_for(user, lambda code: has_permission(current_user, code)),
        **extra,
    }


@bp.get("/users/<int:user_id>")
@permission_required("users.read")
def user_detail(user_id: int):
    user = staff_target(user_id)
    return render_page_or_block("support/user_detail.html", "user_panel", **user_page_context(user))


def act(user_id: int, action: Callable[[User], str]):
    """Run one audited staff action on a user, then show the user's page again with its outcome."""
    user = staff_target(user_id)
    if not services.may_act_on(current_user, user):
        abort(403)
    message = action(user)
    if is_htmx():
        return render_page_or_block("support/user_detail.html", "user_panel",
                                    **user_page_context(user, action_message=message))
    flash(message, "success")
    return redirect(url_for("support.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/password-reset")
@permission_required("tokens.issue")
def password_reset_send(user_id: int):
    def send(user: User) -> str:
        accounts.send_password_reset(user, issued_by=current_user)
        return f"A password reset link was mailed to {user.email}."

    return act(user_id, send)


@bp.post("/users/<int:user_id>/verification")
@permission_required("tokens.issue")
def verification_send(user_id: int):
    def send(user: User) -> str:
        accounts.send_verification(user, issued_by=current_user)
        return f"A confirmation link was mailed to {user.email}."

    return act(user_id, send)


@bp.post("/users/<int:user_id>/tokens/expire")
@permission_required("tokens.issue")
def tokens_expire(user_id: int):
    def expire(user: User) -> str:
        return f"Expired {accounts.expire_outstanding_tokens(user, actor=current_user)} outstanding link(s)."

    return act(user_id, expire)


@bp.post("/users/<int:user_id>/sessions/<int:session_id>/revoke")
@permission_required("sessions.revoke")
def session_revoke(user_id: int, session_id: int):
    def revoke(user: User) -> str:
        if not accounts.revoke_session(user, session_id, actor=current_user):
            abort(404)
        return "That session is signed out."

    return act(user_id, revoke)


@bp.post("/users/<int:user_id>/sessions/revoke")
@permission_required("sessions.revoke")
def sessions_revoke_all(user_id: int):
    def revoke_all(user: User) -> str:
        return f"Signed out {accounts.revoke_all_sessions(user, actor=current_user)} session(s)."

    return act(user_id, revoke_all)


@bp.post("/users/<int:user_id>/lock")
@permission_required("accounts.lock")
def account_lock(user_id: int):
    def lock(user: User) -> str:
        ended = accounts.lock_account(user, actor=current_user)
        return f"The account is locked until unlocked; {ended} session(s) signed out."

    return act(user_id, lock)


@bp.post("/users/<int:user_id>/unlock")
@permission_required("accounts.lock")
def account_unlock(user_id: int):
    def unlock(user: User) -> str:
        accounts.unlock_account(user, actor=current_user)
        return "The account is unlocked."

    return act(user_id, unlock)
