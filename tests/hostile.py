"""The hostile-input walk's vocabulary, shared by every domain's optional tests/<domain>/hostile.py.

tests/test_hostile_input.py sends every value below to every parameter of every rule of
``app.url_map``: path arguments, the query string and form fields a view reads (recorded
while it answers its authorization-matrix request), and the fields of JSON bodies.
A domain adds what that recording cannot see in ``tests/<domain>/hostile.py``:

- ``extra_fields(world) -> dict[(method, rule), Fields]``: more query, form or JSON fields;
- ``bases(world) -> list[Route]``: the request to start from when no role's matrix request
  reaches the view (a runner API call needs a runner token, for example).

The walk fails for a rule whose request reaches its view for no role, and for a path
argument whose converter it cannot fill.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class Fields:
    query: tuple[str, ...] = ()
    form: tuple[str, ...] = ()
    json: tuple[str, ...] = ()


DEEP = 5_000


def deep_json_text(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


# Text sent as path segments, query values and form values (and as JSON strings).
TEXT_VALUES: tuple[str, ...] = (
    "", " ", "\t\r\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "0", "-1", "1",
    str(2**31 - 1), str(2**31), str(-(2**31) - 1), str(2**63), str(-(2**63) - 1), str(10**20), str(10**23),
    "-999999999999", "1e400", "NaN", "Infinity", "-Infinity", "1.5", "0x10", "1_000", "\uff19",
    "' OR 1=1 --", "1; DROP TABLE users; --", "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
    "=cmd|' /C calc'!A0", "\t=1+1", " @SUM(1)", "a" * 10_000, "\u00e9" * 300, "\u202eevil", "\ufeffbom",
    "\u200b", "\ufb01", "\U0001f980" * 100, "%00", "%", "_", "\\", "../../etc/passwd", "//evil.example/",
    "javascript:alert(1)", "9999-12-31", "0000-00-00", "-0", "null", "[]", "\x7f\x1b[31m", "a\nb",
    deep_json_text(),
)

# JSON field values that are not strings.
JSON_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**31, 2**63, 10**20, -(10**23), 0.5, float("nan"), float("inf"), float("-inf"),
    [], {}, [1] * 5_000, {"k" * 300: 1}, {f"m{i}": i for i in range(2_000)}, {"\x00": 1}, {"\ud800": "x"},
)


def json_raw(value: Any) -> str:
    """JSON text for ``value``; NaN and Infinity spelled the way lenient encoders do, 1e400 kept."""
    return json.dumps(value, allow_nan=True)


# Whole JSON bodies, as raw text: what a broken or hostile client may send.
RAW_JSON_BODIES: tuple[str, ...] = (
    "", "not json", "null", "[]", "1e400", "NaN", '{"a": NaN}', '{"a": 1e400}', '{"a": -Infinity}',
    '"\\ud800"', '{"\\u0000": 1}', '{"a": "\\u0000"}', deep_json_text(), '{"a": ' * DEEP + "1" + "}" * DEEP,
    '{"a": 1, "a": 2}', "\ufeff{}", '{"a": "' + "x" * 200_000 + '"}',
)
