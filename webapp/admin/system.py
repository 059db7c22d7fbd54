"""System: the audit trail, the mail outbox, schema history and the database's current Alembic revision."""
from __future__ import annotations

import re

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask_admin import expose
from markupsafe import Markup, escape
from sqlalchemy.orm import joinedload

from webapp.accounts.models import AuditEvent
from webapp.admin.base import SecureModelView, SecureView
from webapp.extensions import db
from webapp.system.models import MigrationLog, OutboxMessage

CATEGORY = "System"


class AuditEventView(SecureModelView):
    """Who did what: read-only, filterable and exportable."""

    read_permission = "audit.read"
    allow_create = allow_edit = allow_delete = False
    can_export = True
    column_list = ("id", "created_at", "actor", "action", "object_type", "object_id", "changes", "ip_address")
    column_searchable_list = ("action", "object_type")
    column_filters = ("action", "object_type", "object_id", "created_at", "actor.email")
    column_export_list = ("id", "created_at", "actor.email", "action", "object_type", "object_id", "changes",
                          "ip_address")
    column_default_sort = ("id", True)
    eager = (joinedload(AuditEvent.actor),)


LINK = re.compile(r"https?://[^\s<>\"]+")


def linked_text(text: str) -> Markup:
    """Mail text as HTML with its line breaks kept and every link clickable."""
    escaped = str(escape(text))
    return Markup('<pre class="mail-body">{}</pre>').format(
        Markup(LINK.sub(lambda found: f'<a href="{found.group(0)}">{found.group(0)}</a>', escaped)))


class OutboxMessageView(SecureModelView):
    """Mail the embedded start kept instead of sending (MAIL_BACKEND=outbox): read it here, links and all."""

    allow_create = allow_edit = allow_delete = False
    can_export = True
    column_list = ("id", "created_at", "recipient", "subject")
    column_details_list = ("id", "created_at", "recipient", "subject", "body")
    column_searchable_list = ("recipient", "subject")
    column_filters = ("recipient", "created_at")
    column_default_sort = ("id", True)
    column_formatters_detail = {"body": lambda view, context, model, name: linked_text(model.body)}


class MigrationLogView(SecureModelView):
    read_permission = "system.read"
    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "revision", "direction", "description", "applied_at")
    column_searchable_list = ("revision", "description")
    column_filters = ("direction", "applied_at")
    column_default_sort = ("id", True)


class AlembicRevisionView(SecureView):
    """The revision the database is at, next to the newest one in the code."""

    read_permission = "system.read"

    @expose("/")
    def index(self):
        current = MigrationContext.configure(db.session.connection()).get_current_heads()
        script = ScriptDirectory(current_app.extensions["migrate"].directory)
        return self.render("admin/minion/revision.html", current=current, heads=script.get_heads(),
                           revisions=list(script.walk_revisions()))


def views() -> list:
    return [
        AuditEventView(AuditEvent, "admin_audit_events", "Audit trail", CATEGORY),
        OutboxMessageView(OutboxMessage, "admin_mail_outbox", "Mail outbox", CATEGORY),
        MigrationLogView(MigrationLog, "admin_migration_log", "Migration log", CATEGORY),
        AlembicRevisionView(name="Schema revision", category=CATEGORY, endpoint="admin_alembic_revision",
                            url="alembic_revision"),
    ]
