"""The profile a user edits on the account page: display name, time zone, and an email change.

An email change is confirmed through the new address: the link carries a signed
(user, old address, new address) triple, so it works once (after the change the old
address no longer matches) and expires with the verification TTL. The old address is
told when the change is asked for and when it is done.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from webapp.accounts.audit import record
from webapp.accounts.models import User
from webapp.accounts.services import find_user_by_email
from webapp.db import utcnow
from webapp.extensions import db
from webapp.mail import absolute_url, send_mail

EMAIL_CHANGE_SALT = "email-change"


@dataclass(frozen=True)
class EmailChange:
    user: User
    new_email: str


def update_profile(user: User, display_name: str, time_zone: str) -> None:
    changes = {name: [getattr(user, name), value] for name, value in
               (("display_name", display_name), ("time_zone", time_zone)) if getattr(user, name) != value}
    if not changes:
        return
    user.display_name, user.time_zone = display_name, time_zone
    record("profile.update", user, changes, actor=user)
    db.session.commit()


def update_usage_alerts(user: User, muted: list[str]) -> None:
    """Switch usage alerts off for the metered quotas in ``muted`` and on for the others."""
    if sorted(muted) == sorted(user.muted_usage_alerts or []):
        return
    record("profile.usage_alerts", user, {"muted_usage_alerts": [user.muted_usage_alerts, muted]}, actor=user)
    user.muted_usage_alerts = muted
    db.session.commit()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=EMAIL_CHANGE_SALT)


def email_taken(email: str, by_other_than: User) -> bool:
    owner = find_user_by_email(email)
    return owner is not None and owner.id != by_other_than.id


def email_change_token(user: User, new_email: str) -> str:
    return _serializer().dumps({"user": user.id, "old": user.email, "new": new_email})


def request_email_change(user: User, new_email: str) -> None:
    """Mail a confirmation link to ``new_email`` and a notice to the current address."""
    token = email_change_token(user, new_email)
    record("email_change.request", user, {"email": [user.email, new_email]}, actor=user)
    db.session.commit()
    minutes = current_app.config["TOKEN_TTL_MINUTES"]["email_verification"]
    send_mail(new_email, "Confirm your new Minion Console email address", "email_change_confirm",
              user=user, new_email=new_email, minutes=minutes,
              link=absolute_url("accounts.email_change_confirm", token=token))
    send_mail(user.email, "Your Minion Console email address is about to change", "email_change_notice",
              user=user, new_email=new_email, reset_link=absolute_url("accounts.password_forgot"))


def pending_email_change(token: str) -> EmailChange | None:
    """The change a link asks for, or None when it is forged, expired, used or its address was taken since."""
    max_age = current_app.config["TOKEN_TTL_MINUTES"]["email_verification"] * 60
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except BadSignature:
        return None
    user = db.session.get(User, payload.get("user"))
    if user is None or user.email != payload.get("old") or email_taken(payload["new"], user):
        return None
    return EmailChange(user, payload["new"])


def confirm_email_change(change: EmailChange) -> None:
    user, old_email = change.user, change.user.email
    user.email, user.email_verified_at = change.new_email, utcnow()
    record("email_change.confirm", user, {"email": [old_email, change.new_email]}, actor=user)
    db.session.commit()
    send_mail(old_email, "Your Minion Console email address was changed", "email_changed",
              user=user, old_email=old_email, reset_link=absolute_url("accounts.password_forgot"))
