"""Schema history and the mail outbox, as admins see them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from webapp.db import TimestampMixin, choice_check
from webapp.extensions import db


class MigrationLog(TimestampMixin, db.Model):
    """One row per Alembic step, written by env.py's on_version_apply hook."""

    __tablename__ = "migration_log"
    __table_args__ = (choice_check("direction", ("upgrade", "downgrade")),)

    revision: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(255), default="", server_default="")
    applied_at: Mapped[datetime]


class OutboxMessage(TimestampMixin, db.Model):
    """A mail the ``outbox`` backend kept instead of sending, for staff to read at /admin/mail_outbox/."""

    __tablename__ = "mail_outbox"

    recipient: Mapped[str] = mapped_column(String(255), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
