"""Service tokens of the metering API, and the daily rollup of usage_records."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk, non_negative
from webapp.extensions import db

# What usage is counted in; usage_records and the rollup both hold one of these.
USAGE_METRICS = ("input_tokens", "output_tokens", "requests", "training_minutes")


class MeteringToken(TimestampMixin, db.Model):
    """A service (the inference gateway) that reports usage and asks for allowances with its own token."""

    __tablename__ = "metering_tokens"

    name: Mapped[str] = mapped_column(String(120), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_used_at: Mapped[datetime | None]

    def __str__(self) -> str:
        return self.name


class UsageRollup(TimestampMixin, db.Model):
    """One user's usage of one metric in one slice of a UTC day, kept in the transaction of each usage record.

    A slice is the whole day, except that a billing period's start or end inside the day cuts it
    in two (``starts_at`` is then that boundary): so a period's usage is the sum of the slices that
    start inside it, one indexed range of at most a few rows a day, however many events there were.
    """

    __tablename__ = "usage_rollups"
    __table_args__ = (
        choice_check("metric", USAGE_METRICS),
        non_negative("quantity"),
        db.UniqueConstraint("user_id", "starts_at", "metric"),
    )

    user_id: Mapped[int] = mapped_column(fk("users.id", "CASCADE"))
    # The UTC day the slice belongs to (the daily chart's bar, the verify command's unit).
    day: Mapped[date]
    starts_at: Mapped[datetime]
    metric: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    user = relationship("User", foreign_keys=[user_id])
