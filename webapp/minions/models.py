"""Minions and their XP ledger."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk, non_negative
from webapp.extensions import db

MINION_STATUSES = ("idle", "training", "active", "retired")
XP_PERIODS = ("week", "month")


class Minion(TimestampMixin, db.Model):
    __tablename__ = "minions"
    __table_args__ = (
        choice_check("status", MINION_STATUSES),
        non_negative("xp"),
        non_negative("level"),
    )

    owner_user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(fk("models.id", "RESTRICT"), index=True)
    model_version_id: Mapped[int | None] = mapped_column(
        fk("model_versions.id", "SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    # Always equal to the sum of this minion's minion_xp_events (kept in the same transaction).
    xp: Mapped[int] = mapped_column(default=0, server_default="0")
    level: Mapped[int] = mapped_column(default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(16), default="idle", server_default="idle")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)

    owner = relationship("User", foreign_keys=[owner_user_id])
    model = relationship("AIModel", foreign_keys=[model_id])
    model_version = relationship("ModelVersion", foreign_keys=[model_version_id])

    @property
    def color(self) -> Any:
        """The avatar colour the owner chose, unchecked (minions.services.avatar_color checks it)."""
        return (self.attributes or {}).get("color")

    def __str__(self) -> str:
        return self.name


# Serves the leaderboard: rank by xp, ties broken by the older minion (lower id) first.
Index("ix_minions_xp_id", Minion.xp.desc(), Minion.id.asc())
# Serves the leaderboard's conditional refresh: the latest change of any minion (minions.services.board_state).
Index("ix_minions_updated_at", Minion.updated_at)
# Serves the admin's list in its default order, paged by key (webapp.admin.keyset).
Index("ix_minions_created_at_id", Minion.created_at, Minion.id)


class MinionXpEvent(TimestampMixin, db.Model):
    __tablename__ = "minion_xp_events"
    __table_args__ = (
        # One award per (minion, reason, job): a job's completion counts once.
        db.UniqueConstraint("minion_id", "reason", "training_job_id"),
        Index("ix_minion_xp_events_created_at_minion_id", "created_at", "minion_id"),
    )

    minion_id: Mapped[int] = mapped_column(fk("minions.id", "CASCADE"), index=True)
    delta: Mapped[int]
    reason: Mapped[str] = mapped_column(String(64))
    training_job_id: Mapped[int | None] = mapped_column(
        fk("training_jobs.id", "SET NULL"), index=True
    )

    minion: Mapped[Minion] = relationship()
    training_job = relationship("TrainingJob", foreign_keys=[training_job_id])


class MinionXpGain(TimestampMixin, db.Model):
    """XP a minion gained in one week or month: the leaderboard's windows, rolled up as XP arrives.

    ``award_xp`` adds each delta here in the same transaction as the ledger row,
    so a window's board reads one indexed range instead of summing the ledger.
    """

    __tablename__ = "minion_xp_gains"
    __table_args__ = (
        choice_check("period", XP_PERIODS),
        db.UniqueConstraint("period", "period_start", "minion_id"),
    )

    minion_id: Mapped[int] = mapped_column(fk("minions.id", "CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(8))
    # UTC Monday 00:00 for a week, the 1st 00:00 for a month (minions.services.window_start).
    period_start: Mapped[datetime]
    gained: Mapped[int] = mapped_column(default=0, server_default="0")

    minion: Mapped[Minion] = relationship()


# Serves a window's board: one period's rows by gain, ties broken by the older minion.
Index(
    "ix_minion_xp_gains_board", MinionXpGain.period, MinionXpGain.period_start,
    MinionXpGain.gained.desc(), MinionXpGain.minion_id.asc(),
)
