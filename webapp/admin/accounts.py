"""Accounts: users, roles, permissions, their links, sessions and one-time tokens."""
from __future__ import annotations

from flask_login import current_user
from sqlalchemy import inspect
from sqlalchemy.orm import joinedload, selectinload
from wtforms import PasswordField, ValidationError
from wtforms.validators import InputRequired

from webapp.accounts.models import TOKEN_TYPES, Permission, Role, RolePermission, Token, User, UserRole, UserSession
from webapp.accounts.audit import record
from webapp.accounts.passwords import hash_password, password_problem
from webapp.accounts.sessions import end_sessions, end_user_sessions
from webapp.admin.base import USER_LOOKUP, Inline, SecureModelView, admin_action, choice_filter, lookup
from webapp.billing.models import UserSubscription
from webapp.minions.models import Minion
from webapp.training.models import TrainingJob

CATEGORY = "Accounts"


def password_policy(form, field) -> None:
    problem = password_problem(field.data) if field.data else None
    if problem:
        raise ValidationError(problem)


class AccountsView(SecureModelView):
    read_permission = "users.read"
    write_permission = "users.write"


class UserView(AccountsView):
    column_list = ("id", "email", "display_name", "roles", "is_active", "email_verified_at", "last_login_at",
                   "created_at")
    column_searchable_list = ("email", "display_name")
    column_filters = ("is_active", "created_at", "last_login_at", "email_verified_at", "locked_until")
    column_sortable_list = ("id", "email", "display_name", "is_active", "last_login_at", "created_at")
    column_details_list = ("id", "email", "display_name", "roles", "is_active", "email_verified_at",
                           "failed_login_count", "locked_until", "last_login_at", "avatar_url",
                           "current_subscription", "created_at", "updated_at", "lock_version")
    column_export_list = ("id", "email", "display_name", "is_active", "email_verified_at", "last_login_at",
                          "created_at")
    can_export = True
    form_columns = ("email", "display_name", "password", "roles", "is_active", "email_verified_at",
                    "locked_until", "avatar_url")
    form_extra_fields = {
        "password": PasswordField("Password", validators=[password_policy],
                                  description="Leave blank to keep the current password."),
    }
    form_ajax_refs = {"roles": lookup("name")}
    maintained = ("password_hash", "failed_login_count", "last_login_at", "current_subscription")
    audited_collections = ("roles",)
    inlines = (
        Inline("Subscriptions", UserSubscription, UserSubscription.user_id, named_by=("plan",)),
        Inline("Sessions", UserSession, UserSession.user_id),
        Inline("Minions", Minion, Minion.owner_user_id),
        Inline("Training jobs", TrainingJob, TrainingJob.user_id),
    )
    eager = (selectinload(User.roles), joinedload(User.current_subscription))
    record_eager = (joinedload(User.roles), joinedload(User.current_subscription).joinedload(UserSubscription.plan))
    list_eager = (joinedload(User.roles),)

    def get_create_form(self):
        class CreateForm(super().get_create_form()):
            password = PasswordField("Password", validators=[InputRequired(), password_policy])

        return CreateForm

    def on_model_change(self, form, model: User, is_created: bool) -> None:
        if form.password.data:
            model.password_hash = hash_password(form.password.data)
        if not is_created and not model.is_active and True in inspect(model).attrs.is_active.history.deleted:
            # Deactivated in the edit form: its sessions end now, as with the bulk action.
            ended = end_user_sessions(model, revoked_by=current_user)
            if ended:
                record("admin.revoke_sessions", model, {"active_sessions": [ended, 0]})

    @admin_action("deactivate", "Deactivate", "users.write", "Deactivate the selected accounts?")
    def action_deactivate(self, ids: list[str]) -> None:
        def deactivate(user: User) -> bool:
            if not user.is_active:
                return False
            user.is_active = False
            ended = end_user_sessions(user, revoked_by=current_user)
            record("admin.deactivate", user, {"is_active": [True, False], "sessions_revoked": ended})
            return True

        self.run_bulk(ids, deactivate, "{count} accounts deactivated ({skipped} already were).")

    @admin_action("revoke_sessions", "Sign out everywhere", "sessions.revoke",
                  "Sign the selected users out of every session?")
    def action_revoke_sessions(self, ids: list[str]) -> None:
        def revoke(user: User) -> bool:
            ended = end_user_sessions(user, revoked_by=current_user)
            if ended:
                record("admin.revoke_sessions", user, {"active_sessions": [ended, 0]})
            return bool(ended)

        self.run_bulk(ids, revoke,
                      "Signed out {count} users ({skipped} had no active session).")


class RoleView(AccountsView):
    column_list = ("id", "name", "description", "permissions", "created_at")
    column_searchable_list = ("name", "description")
    column_filters = ("name", "created_at")
    column_default_sort = "name"
    form_columns = ("name", "description", "permissions")
    form_ajax_refs = {"permissions": lookup("code", "description")}
    audited_collections = ("permissions",)
    eager = (selectinload(Role.permissions),)


class PermissionView(AccountsView):
    column_list = ("id", "code", "description", "created_at")
    column_searchable_list = ("code", "description")
    column_filters = ("code", "created_at")
    column_default_sort = "code"
    form_columns = ("code", "description")


class UserRoleView(AccountsView):
    column_list = ("id", "user", "role", "created_at")
    column_searchable_list = ("user.email", "role.name")
    column_filters = ("role.name", "created_at")
    form_columns = ("user", "role")
    form_ajax_refs = {"user": USER_LOOKUP, "role": lookup("name")}
    eager = (joinedload(UserRole.user), joinedload(UserRole.role))


class RolePermissionView(AccountsView):
    column_list = ("id", "role", "permission", "created_at")
    column_searchable_list = ("role.name", "permission.code")
    column_filters = ("role.name", "created_at")
    form_columns = ("role", "permission")
    form_ajax_refs = {"role": lookup("name"), "permission": lookup("code")}
    eager = (joinedload(RolePermission.role), joinedload(RolePermission.permission))


class SessionView(AccountsView):
    """Signed-in browsers: read-only, with sign-out as the one thing to do."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "user", "is_active", "ip_address", "user_agent", "last_seen_at", "expires_at",
                   "revoked_at", "revoked_by")
    column_searchable_list = ("user.email", "ip_address")
    column_filters = ("is_active", "last_seen_at", "expires_at", "user.email")
    eager = (joinedload(UserSession.user), joinedload(UserSession.revoked_by))

    @admin_action("revoke", "Sign out", "sessions.revoke", "End the selected sessions?")
    def action_revoke(self, ids: list[str]) -> None:
        def revoke(session: UserSession) -> bool:
            ended = end_sessions(UserSession.id == session.id, revoked_by=current_user)
            if ended:
                record("admin.revoke_session", session, {"is_active": [True, False]})
            return bool(ended)

        self.run_bulk(ids, revoke, "{count} sessions ended ({skipped} already were).")


class TokenView(AccountsView):
    """Password reset and verification tokens: only their metadata, never the hash."""

    allow_create = allow_edit = False
    column_list = ("id", "user", "type", "expires_at", "used_at", "issued_by", "created_at")
    column_searchable_list = ("user.email",)
    column_filters = (choice_filter(Token.type, "Type", TOKEN_TYPES), "expires_at", "used_at", "created_at")
    eager = (joinedload(Token.user), joinedload(Token.issued_by))


def views() -> list[SecureModelView]:
    return [
        UserView(User, "admin_users", "Users", CATEGORY),
        RoleView(Role, "admin_roles", "Roles", CATEGORY),
        PermissionView(Permission, "admin_permissions", "Permissions", CATEGORY),
        UserRoleView(UserRole, "admin_user_roles", "User roles", CATEGORY),
        RolePermissionView(RolePermission, "admin_role_permissions", "Role permissions", CATEGORY),
        SessionView(UserSession, "admin_sessions", "Sessions", CATEGORY),
        TokenView(Token, "admin_tokens", "Tokens", CATEGORY),
    ]
