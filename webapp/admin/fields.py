"""Form fields and filters the admin needs beyond Flask-Admin's: aware UTC, checked JSON, lock versions."""
from __future__ import annotations

import json
from datetime import timezone
from typing import Any

from flask import current_app
from flask_admin import form as admin_form
from flask_admin.contrib.sqla import filters as sqla_filters
from flask_admin.contrib.sqla.form import AdminModelConverter
from flask_admin.model.form import converts
from flask_wtf import FlaskForm
from wtforms import HiddenField

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class AdminForm(FlaskForm):
    """Every admin form, delete and action form carries Flask-WTF's CSRF token (rendered by hidden_tag)."""

    def __init__(self, formdata: Any = None, obj: Any = None, prefix: str = "", **kwargs: Any) -> None:
        # Flask-Admin's unique validators look the edited row up here.
        self._obj = obj
        super().__init__(formdata=formdata, obj=obj, prefix=prefix, **kwargs)


class UTCDateTimeField(admin_form.DateTimeField):
    """A date and time typed in UTC, handed to the model as an aware datetime."""

    def __init__(self, label: str | None = None, validators: Any = None, **kwargs: Any) -> None:
        kwargs["description"] = kwargs.get("description") or "UTC, as YYYY-MM-DD HH:MM:SS"
        super().__init__(label, validators, format=DATETIME_FORMAT, **kwargs)

    def process_formdata(self, valuelist: Any) -> None:
        super().process_formdata(valuelist)
        if self.data is not None and self.data.tzinfo is None:
            self.data = self.data.replace(tzinfo=timezone.utc)
        # The form shows whole seconds: an untouched value keeps its stored microseconds.
        if self.data is not None and self.object_data is not None and self.data == self.object_data.replace(microsecond=0):
            self.data = self.object_data

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        return self.data.astimezone(timezone.utc).strftime(DATETIME_FORMAT) if self.data else ""


class CheckedJSONField(admin_form.JSONField):
    """JSON text that must parse into the column's shape (an object or a list)."""

    def __init__(self, label: str | None = None, validators: Any = None, shape: type = dict, **kwargs: Any) -> None:
        self.shape = shape
        kwargs["description"] = kwargs.get("description") or f"JSON {'object' if shape is dict else 'list'}"
        super().__init__(label, validators, **kwargs)

    def process_formdata(self, valuelist: Any) -> None:
        if not valuelist or not valuelist[0].strip():
            self.data = self.shape()
            return
        try:
            # The app's JSON reader: finite numbers and bounded nesting, as for every JSON body.
            self.data = current_app.json.loads(valuelist[0])
        except json.JSONDecodeError as error:
            raise ValueError(f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}).") from error
        except ValueError as error:
            raise ValueError(f"Not accepted JSON: {error}") from error
        if not isinstance(self.data, self.shape):
            raise ValueError(f"Enter a JSON {'object {...}' if self.shape is dict else 'list [...]'}.")

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return json.dumps(self.data if self.data is not None else self.shape(), ensure_ascii=False, indent=2)


class LockVersionField(HiddenField):
    """The lock_version the editor loaded; compared on save, never written to the row."""

    def process_formdata(self, valuelist: Any) -> None:
        raw = valuelist[0] if valuelist else ""
        self.data = int(raw) if raw.isdigit() else None

    def populate_obj(self, obj: Any, name: str) -> None:
        """The row's own version counter moves forward on save; the form's copy is only for the check."""


class AdminConverter(AdminModelConverter):
    """Flask-Admin's converter, taught the project's UTCDateTime and JSON types."""

    @converts("UTCDateTime")
    def convert_utc_datetime(self, field_args: dict[str, Any], **extra: Any) -> UTCDateTimeField:
        return UTCDateTimeField(**field_args)

    @converts("JSON")
    def convert_json(self, field_args: dict[str, Any], **extra: Any) -> CheckedJSONField:
        column = extra["column"]
        shape = list if column.default is not None and column.default.arg.__name__.startswith("list") else dict
        return CheckedJSONField(shape=shape, **field_args)


class AwareDateTimeClean:
    """Filter values typed in UTC become aware datetimes (UTCDateTime refuses naive ones)."""

    def clean(self, value: str) -> Any:
        cleaned = super().clean(value)
        if isinstance(cleaned, list):
            return [item.replace(tzinfo=timezone.utc) for item in cleaned]
        return cleaned.replace(tzinfo=timezone.utc)


class AfterFilter(AwareDateTimeClean, sqla_filters.DateTimeGreaterFilter):
    pass


class BeforeFilter(AwareDateTimeClean, sqla_filters.DateTimeSmallerFilter):
    pass


class BetweenFilter(AwareDateTimeClean, sqla_filters.DateTimeBetweenFilter):
    pass


class AdminFilterConverter(sqla_filters.FilterConverter):
    """Filters for UTCDateTime columns: after, before, between."""

    @sqla_filters.filters.convert("utcdatetime")
    def conv_utc_datetime(self, column: Any, name: str, **kwargs: Any) -> list[Any]:
        return [f(column, name, **kwargs) for f in (AfterFilter, BeforeFilter, BetweenFilter)]
