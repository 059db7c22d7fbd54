"""The one input boundary: every request's text, integers, JSON and size are checked before a view runs.

- ``<int:...>`` in every rule is BoundedIntConverter: ASCII digits up to the largest id an
  integer column holds; anything else matches no rule (404).
- ``request.args.get(name, type=int)`` and the same on ``request.form`` (our views and
  Flask-Admin's pager alike) refuse a number outside 0..2**31-1 with a 400 naming the field.
- A before-request guard refuses a body over MAX_CONTENT_LENGTH (413), and NUL characters
  or unpaired surrogates in the path, query string, form, headers and JSON (400, field named).
- JSON bodies are parsed by FiniteJSONProvider: finite numbers only, nested at most
  JSON_MAX_DEPTH levels, so neither NaN nor a 5,000-deep list gets further.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask, Request, abort, current_app, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.routing import IntegerConverter

INT32_MAX = 2**31 - 1
# NUL (which PostgreSQL cannot store in text) and UTF-16 surrogates (which UTF-8 cannot encode).
NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


class BoundedIntConverter(IntegerConverter):
    """``<int:...>``: ASCII digits (not any Unicode digit) that fit an integer id column."""

    regex = r"[0-9]{1,10}"

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = None,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits, min, INT32_MAX if max is None else max, signed)


def bounded_int(name: str, raw: str, default: Any) -> Any:
    """``raw`` as an int within 0..INT32_MAX; ``default`` when it is no number; 400 when out of range."""
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        return default
    if not 0 <= value <= INT32_MAX:
        abort(400, f"{name} must be a whole number from 0 to {INT32_MAX}.")
    return value


class CheckedMultiDict(ImmutableMultiDict):
    """Query string and form values whose ``type=int`` reads are range-checked for an integer column."""

    def get(self, key, default=None, type=None):
        if type is int and key in self:
            return bounded_int(key, super().__getitem__(key), default)
        return super().get(key, default, type)


class BoundaryRequest(Request):
    parameter_storage_class = CheckedMultiDict


class InvalidJSON(ValueError):
    """A JSON body the console refuses to read (its message is shown to the client)."""


def refuse_constant(name: str) -> float:
    raise InvalidJSON(f"{name} is not a number JSON allows; numbers must be finite.")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJSON(f"{text[:20]} is out of range; numbers must be finite.")
    return value


def json_depth_exceeded(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists and objects more than ``limit`` levels deep (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


class FiniteJSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading only finite numbers and bounded nesting."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        kwargs.setdefault("parse_constant", refuse_constant)
        kwargs.setdefault("parse_float", finite_float)
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise InvalidJSON("The JSON is nested too deeply.") from None
        limit = self._app.config["JSON_MAX_DEPTH"]
        if json_depth_exceeded(value, limit):
            raise InvalidJSON(f"The JSON is nested more than {limit} levels deep.")
        return value


def json_strings(value: Any, path: str = "body") -> Iterator[tuple[str, str]]:
    """(where, text) for every key and string in a parsed JSON value, without recursion."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield f"{where} key", key
                stack.append((child, f"{where}.{key}" if where != "body" else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))


def refuse_text(where: str) -> None:
    abort(400, f"{where} holds a NUL character or an unpaired surrogate, which is not text; remove it and try again.")


def request_texts() -> Iterator[tuple[str, str]]:
    """(field, text) for every piece of text this request brings."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            yield name, value
    yield "the path", request.path
    for source, values in (("query", request.args), ("form", request.form)):
        for key, value in values.items(multi=True):
            yield f"{source} field name {key[:40]!r}", key
            yield key, value
    for key, storage in request.files.items(multi=True):
        yield key, storage.filename or ""
    for name, value in request.headers.items():
        yield f"header {name}", value


# Routes that take bodies past MAX_CONTENT_LENGTH (uploads): endpoint -> () -> (limit in bytes, the 413 message).
LARGER_BODIES: dict[str, Callable[[], tuple[int, str]]] = {}


def allow_larger_body(endpoint: str, limit: Callable[[], tuple[int, str]]) -> None:
    """Let ``endpoint`` take a body up to ``limit()``; the guard reads it before anything reads the body."""
    LARGER_BODIES[endpoint] = limit


def guard_request() -> None:
    """Refuse oversized bodies and text that is not text before any view (or sign-in check) runs."""
    declared = LARGER_BODIES.get(request.endpoint or "")
    if declared is not None:
        limit, message = declared()
        request.max_content_length = limit
    else:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        message = f"The request body is larger than {limit} bytes."
    if limit is not None and (request.content_length or 0) > limit:
        abort(413, message)
    for where, text in request_texts():
        if NOT_TEXT.search(text):
            refuse_text(where)
    if request.is_json and request.method not in ("GET", "HEAD"):
        body = request.get_json(silent=False) if request.get_data(cache=True) else None
        for where, text in json_strings(body):
            if NOT_TEXT.search(text):
                refuse_text(where)


def init_app(app: Flask) -> None:
    """Before any blueprint registers a rule: the converter applies when a rule is added."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.request_class = BoundaryRequest
    app.json = FiniteJSONProvider(app)
    app.before_request(guard_request)
