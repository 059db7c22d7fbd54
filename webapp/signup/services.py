"""Making an account: the user, the default role and the sign-up plan's subscription in one transaction.

The answer and the work are the same whether the address is new or taken: the
password is hashed and one mail is sent either way (a confirmation link to a new
account, a "someone tried to sign up" note to an existing one), so neither the
page nor its timing tells whether an address has an account.
"""
from __future__ import annotations

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.accounts.audit import record
from webapp.accounts.models import Role, User
from webapp.accounts.passwords import hash_password
from webapp.accounts.permissions import ROLE_DESCRIPTIONS
from webapp.accounts.services import find_user_by_email, send_verification
from webapp.billing.models import Plan
from webapp.billing.services import change_plan
from webapp.extensions import db
from webapp.mail import absolute_url, send_mail

DEFAULT_ROLE = "user"


class SignUpUnavailable(Exception):
    """Sign-up is turned off, or the plan new accounts start on does not exist."""


def signup_plan() -> Plan:
    code = current_app.config["SIGNUP_PLAN"]
    plan = db.session.scalars(select(Plan).where(Plan.code == code)).first()
    if not current_app.config["SIGNUP_ENABLED"] or plan is None or plan.price_cents:
        if current_app.config["SIGNUP_ENABLED"]:
            current_app.logger.error("SIGNUP_PLAN %r names no free plan; sign-up is unavailable", code)
        raise SignUpUnavailable("Sign-up is not open on this console. Ask its administrators for an account.")
    return plan


def default_role() -> Role:
    role = db.session.scalars(select(Role).where(Role.name == DEFAULT_ROLE)).first()
    if role is None:
        role = Role(name=DEFAULT_ROLE, description=ROLE_DESCRIPTIONS[DEFAULT_ROLE])
        db.session.add(role)
    return role


def sign_up(email: str, display_name: str, password: str) -> None:
    """Create the account and mail its confirmation link, or tell the address's owner of the attempt."""
    plan = signup_plan()
    password_hash = hash_password(password)
    existing = find_user_by_email(email)
    if existing is None:
        try:
            user = _create_account(email, display_name, password_hash, plan)
        except IntegrityError:
            # The same address signed up a moment ago (the unique index on lower(email) said so).
            db.session.rollback()
            existing = find_user_by_email(email)
        else:
            send_verification(user)  # commits the account with its token, then mails the link
            return
    record("account.signup_attempt", existing, {"email": email}, actor=None)
    db.session.commit()
    send_mail(existing.email, "Someone tried to sign up with your address", "signup_existing", user=existing,
              login_link=absolute_url("accounts.login"), reset_link=absolute_url("accounts.password_forgot"))


def _create_account(email: str, display_name: str, password_hash: str, plan: Plan) -> User:
    user = User(email=email, display_name=display_name, password_hash=password_hash, roles=[default_role()])
    db.session.add(user)
    db.session.flush()
    change_plan(user, plan, actor=user, expected_amount_cents=0)
    record("account.signup", user, {"email": email, "display_name": display_name, "plan": plan.code}, actor=user)
    db.session.flush()
    return user
