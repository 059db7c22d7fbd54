"""Times shown one way: in the signed-in user's time zone with the zone marked, inside <time datetime>.

``{{ job.started_at|when }}`` renders ``<time datetime="2026-12-01T08:25:00+00:00">2026-12-01 09:25 CET</time>``;
``{{ event.created_at|ago }}`` renders "12 min ago" with the absolute time as its title.
Visitors and users who chose no zone see UTC. CSV exports use ISO 8601 UTC (``iso_utc``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, available_timezones

from flask import Flask, has_request_context
from flask_login import current_user
from markupsafe import Markup, escape

from webapp.db import utcnow

DEFAULT_ZONE = "UTC"
RELATIVE_UNITS = ((86400, "days"), (3600, "h"), (60, "min"))


def zone_names() -> list[str]:
    """Every IANA zone the system knows, UTC first."""
    return [DEFAULT_ZONE] + sorted(name for name in available_timezones() if name != DEFAULT_ZONE and "/" in name)


def viewer_zone() -> ZoneInfo:
    name = DEFAULT_ZONE
    if has_request_context() and current_user.is_authenticated:
        name = getattr(current_user, "time_zone", None) or DEFAULT_ZONE
    return ZoneInfo(name)


def as_utc(value: datetime) -> datetime:
    """Aware UTC, also for a naive value (SQLite hands back naive datetimes that are UTC)."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def local_text(value: datetime, seconds: bool = False) -> str:
    """``2026-12-01 09:25 CET`` in the viewer's zone."""
    local = as_utc(value).astimezone(viewer_zone())
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


def iso_utc(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="seconds")


def when(value: datetime | None, seconds: bool = False, empty: str = "never") -> Markup:
    if value is None:
        return Markup('<span class="muted">{}</span>').format(empty)
    return Markup('<time datetime="{}">{}</time>').format(iso_utc(value), local_text(value, seconds))


def relative_text(value: datetime, now: datetime | None = None) -> str:
    """"just now", "12 min ago", "3 h ago", "5 days ago", or "in 4 h" for the future."""
    delta = ((now or utcnow()) - as_utc(value)).total_seconds()
    future, seconds = delta < 0, abs(delta)
    if seconds < 60:
        return "just now"
    size, unit = next((size, unit) for size, unit in RELATIVE_UNITS if seconds >= size)
    count = int(seconds // size)
    text = f"{count} {unit.rstrip('s') if count == 1 else unit}"
    return f"in {text}" if future else f"{text} ago"


def ago(value: datetime | None, empty: str = "never") -> Markup:
    if value is None:
        return Markup('<span class="muted">{}</span>').format(empty)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso_utc(value), local_text(value), escape(relative_text(value)))


def init_app(app: Flask) -> None:
    app.add_template_filter(when, "when")
    app.add_template_filter(ago, "ago")
