"""The job list's filters (read from the query string so a filtered list can be linked) and the new-job form."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from flask_wtf import FlaskForm
from wtforms import (
    DateField, EmailField, FloatField, IntegerField, SelectChoice, SelectField, StringField, TextAreaField,
)
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from webapp.training.models import JOB_STATUSES, JOB_TYPES
from webapp.training.playground import MAX_PROMPT_CHARS
from webapp.training.runtime import HyperParameter
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


def optional_int(value) -> int | None:
    return int(value) if value not in (None, "", "None") else None


class NewJobForm(FlaskForm):
    """/jobs/new: what to train, on what, and how. Hyperparameter fields come from the trainer (see job_form)."""

    minion = SelectField("Minion", coerce=int, validators=[InputRequired("Choose the minion to train.")])
    base_model = SelectField("Base model", coerce=int, validators=[InputRequired("Choose the model to start from.")])
    train_dataset = SelectField("Train split", coerce=int, validators=[InputRequired("Choose the dataset to train on.")])
    validation_dataset = SelectField("Validation split", coerce=optional_int, validators=[Optional()])
    name = StringField("Job name", validators=[Optional(), Length(max=200)],
                       filters=[lambda value: value.strip() if value else value])

    hyperparameter_names: tuple[str, ...] = ()

    def hyperparameters(self) -> dict[str, float]:
        return {name: self[name].data for name in self.hyperparameter_names}


def job_form(hyperparameters: list[HyperParameter], formdata) -> NewJobForm:
    """A NewJobForm with one range-checked number field per hyperparameter the trainer declares."""
    fields = {}
    for parameter in hyperparameters:
        field_class = IntegerField if parameter.type is int else FloatField
        fields[parameter.name] = field_class(
            parameter.label, default=parameter.default, description=parameter.help,
            validators=[InputRequired(f"{parameter.label} is required."),
                        NumberRange(parameter.min, parameter.max,
                                    f"{parameter.label} must be from {parameter.min:g} to {parameter.max:g}.")],
            render_kw={"min": parameter.min, "max": parameter.max,
                       "step": 1 if parameter.type is int else "any"})
    form_class = type("TrainerJobForm", (NewJobForm,), {**fields, "hyperparameter_names": tuple(fields)})
    return form_class(formdata=formdata)


class PlaygroundForm(FlaskForm):
    """A prompt for the playground on the minion page."""

    prompt = TextAreaField("Prompt", validators=[
        InputRequired("Write something for the minion to answer."), Length(max=MAX_PROMPT_CHARS)])
