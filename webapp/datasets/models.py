"""Datasets: platform ones (no owner) and users' own, stored in the artifact store."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.db import TimestampMixin, choice_check, fk, non_negative
from webapp.extensions import db

DATASET_VISIBILITIES = ("public", "private")


class Dataset(TimestampMixin, db.Model):
    """Platform datasets (no owner) and personal ones in one table (review item 7)."""

    __tablename__ = "datasets"
    __table_args__ = (
        choice_check("visibility", DATASET_VISIBILITIES),
        db.UniqueConstraint("owner_user_id", "slug"),
        non_negative("size_bytes"),
        non_negative("row_count"),
        # The public catalogue: listed datasets by name.
        Index("ix_datasets_visibility_name", "visibility", "name"),
        # NULL owners are distinct in a unique constraint, so platform slugs need their own index.
        Index(
            "uq_datasets_platform_slug",
            "slug",
            unique=True,
            sqlite_where=db.text("owner_user_id IS NULL"),
            postgresql_where=db.text("owner_user_id IS NULL"),
        ),
    )

    owner_user_id: Mapped[int | None] = mapped_column(fk("users.id", "CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    visibility: Mapped[str] = mapped_column(String(8), default="private", server_default="private")
    format: Mapped[str] = mapped_column(String(32), default="jsonl", server_default="jsonl")
    uri: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    # A user's public dataset is listed in the catalogue once staff approve it (platform ones need no approval).
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[int | None] = mapped_column(fk("users.id", "SET NULL"), index=True)

    owner = relationship("User", foreign_keys=[owner_user_id])
    approved_by = relationship("User", foreign_keys=[approved_by_id])

    @property
    def review_state(self) -> str:
        """private, public (listed in the catalogue) or awaiting approval."""
        if self.visibility == "private":
            return "private"
        return "public" if self.owner_user_id is None or self.approved_at is not None else "awaiting approval"

    def __str__(self) -> str:
        return self.name
