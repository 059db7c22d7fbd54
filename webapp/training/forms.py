"""The job list's filters, read from the query string so a filtered list can be linked."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, SelectChoice, SelectField
from wtforms.validators import Length, Optional, ValidationError

from webapp.training.models import JOB_STATUSES, JOB_TYPES
from webapp.training.services import SORTS, JobFilters


# Dates the filters accept: "To" adds a day, so the last day of year 9999 would overflow.
EARLIEST, LATEST = date(1970, 1, 1), date(9000, 12, 31)


def within_supported_dates(form, field) -> None:
    if field.data is not None and not EARLIEST <= field.data <= LATEST:
        raise ValidationError(f"Pick a date from {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}.")


def choices(blank: str, values: tuple[str, ...]) -> list[SelectChoice]:
    return [SelectChoice("", blank)] + [SelectChoice(value, value.capitalize()) for value in values]


class JobFilterForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form: it changes nothing

    status = SelectField("Status", choices=choices("Any status", JOB_STATUSES), validators=[Optional()])
    job_type = SelectField("Type", choices=choices("Any type", JOB_TYPES), validators=[Optional()])
    since = DateField("From", validators=[Optional(), within_supported_dates])
    until = DateField("To", validators=[Optional(), within_supported_dates])
    owner = EmailField("Owner email", validators=[Optional(), Length(max=255)])
    sort = SelectField("Sort by", choices=[SelectChoice(key, key.capitalize()) for key in SORTS], default="newest",
                       validators=[Optional()])

    def filters(self) -> JobFilters:
        """The valid filters; an invalid field is ignored (and shown with its error)."""
        self.validate()
        return JobFilters(
            status=self.status.data or None,
            job_type=self.job_type.data or None,
            since=start_of_day(self.since.data) if not self.since.errors else None,
            until=start_of_day(self.until.data, days=1) if not self.until.errors else None,
            owner_email=self.owner.data or None,
            sort=self.sort.data or "newest",
        )


def start_of_day(day, days: int = 0) -> datetime | None:
    """Midnight UTC of ``day`` (plus ``days``), so "To" includes the whole day."""
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=days), time.min, tzinfo=timezone.utc)
