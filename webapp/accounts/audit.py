"""Writing the audit trail: one row per staff or user action, in the caller's transaction."""
from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from flask_login import current_user

from webapp.accounts.models import AuditEvent
from webapp.extensions import db

REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({
    "password", "password_hash", "token", "token_hash", "session_token_hash",
    "refresh_token_hash", "api_key", "api_key_ciphertext",
})


def jsonable(value: Any) -> Any:
    """A value as it can be stored in the JSON column."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return REDACTED
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def redact(changes: dict[str, Any]) -> dict[str, Any]:
    """Secrets become a marker; anything else is stored as JSON."""
    return {key: (REDACTED if key in SECRET_FIELDS else jsonable(value)) for key, value in changes.items()}


def record(action: str, target: Any, changes: dict[str, Any] | None = None, actor: Any = None,
           ip_address: str | None = None) -> AuditEvent:
    """Add an audit row for ``action`` on ``target`` (a model instance, or a (type, id) pair).

    The row joins the current transaction, so it commits or rolls back with the action.
    ``ip_address`` defaults to the request's; work done after the response passes it along.
    """
    if isinstance(target, tuple):
        object_type, object_id = target
    else:
        object_type, object_id = target.__tablename__, target.id
    if actor is None and has_request_context() and current_user.is_authenticated:
        actor = current_user
    event = AuditEvent(
        actor_id=getattr(actor, "id", None),
        action=action,
        object_type=object_type,
        object_id=object_id,
        changes=redact(changes or {}),
        ip_address=ip_address or (request.remote_addr if has_request_context() else None),
    )
    db.session.add(event)
    return event


def change_text(value: Any) -> str:
    """An audited change as people read it: ``free → pro`` for an [old, new] pair, the value itself otherwise."""
    def shown(part: Any) -> str:
        return "—" if part is None else ", ".join(map(str, part)) if isinstance(part, list) else str(part)

    if isinstance(value, list) and len(value) == 2:
        return f"{shown(value[0])} → {shown(value[1])}"
    return shown(value)
