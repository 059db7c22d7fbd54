"""Reading dataset files row by row: the formats users upload and the problems in them.

Three shapes are accepted, in two file formats:
- ``jsonl``, one JSON object a line: chat fine-tuning rows ``{"messages": [...]}``,
  or ``{"prompt": ..., "completion": ...}``;
- ``csv`` with ``prompt`` and ``completion`` columns (a header row first).

Every accepted row becomes an :class:`Example` in the chat shape, so trainers and
providers read one thing whatever was uploaded. The same reader serves the
upload's validation report and the trainers, so what was accepted is what is trained on.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

FORMATS = ("jsonl", "csv")
CHAT_ROLES = ("system", "user", "assistant")
# A report lists this many problems; the count covers them all.
REPORTED_PROBLEMS = 50
# Skipping the rest of an over-long line reads it in pieces of this size.
_SKIP_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Example:
    """One training row in the chat shape: system/user/assistant messages."""

    messages: tuple[tuple[str, str], ...]  # (role, content)

    @property
    def prompt(self) -> str:
        """Everything said before the last assistant message."""
        last = self._last_assistant()
        return "\n".join(content for _, content in self.messages[:last])

    @property
    def completion(self) -> str:
        return self.messages[self._last_assistant()][1]

    def as_chat(self) -> dict:
        """The row as an OpenAI chat fine-tuning line."""
        return {"messages": [{"role": role, "content": content} for role, content in self.messages]}

    def _last_assistant(self) -> int:
        return max(i for i, (role, _) in enumerate(self.messages) if role == "assistant")


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass
class ValidationReport:
    rows_accepted: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.rows_accepted > 0

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < REPORTED_PROBLEMS:
            self.problems.append(problem)


def format_for_filename(filename: str) -> str | None:
    """The file format its name says (``.jsonl``/``.json``/``.csv``), or None."""
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"jsonl": "jsonl", "json": "jsonl", "csv": "csv"}.get(suffix)


def read_rows(stream: IO[bytes], fmt: str, max_row_chars: int) -> Iterator[tuple[int, Example | Problem]]:
    """Each row of ``stream`` with its line number, as an Example or the Problem with it."""
    if fmt == "jsonl":
        return _jsonl_rows(stream, max_row_chars)
    if fmt == "csv":
        return _csv_rows(stream, max_row_chars)
    raise ValueError(f"unknown dataset format {fmt!r}")


def validate(stream: IO[bytes], fmt: str, max_row_chars: int) -> ValidationReport:
    """Read the whole stream and report rows accepted and the problems found."""
    report = ValidationReport()
    for _, row in read_rows(stream, fmt, max_row_chars):
        if isinstance(row, Problem):
            report.add(row)
        else:
            report.rows_accepted += 1
    if report.rows_accepted == 0 and report.problem_count == 0:
        report.add(Problem(1, "the file has no rows"))
    return report


def read_examples(stream: IO[bytes], fmt: str, max_row_chars: int) -> Iterator[Example]:
    """The examples of a dataset that passed validation; a problem now means the stored file changed."""
    for line, row in read_rows(stream, fmt, max_row_chars):
        if isinstance(row, Problem):
            raise ValueError(f"line {line}: {row.reason}")
        yield row


# --- JSON lines ---------------------------------------------------------------


def _jsonl_rows(stream: IO[bytes], max_row_chars: int) -> Iterator[tuple[int, Example | Problem]]:
    # UTF-8 needs at most 4 bytes a character, so a line longer than this is too long whatever it holds.
    max_bytes = 4 * max_row_chars
    line_no = 0
    while True:
        raw = stream.readline(max_bytes + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            _skip_rest_of_line(stream)
            yield line_no, Problem(line_no, f"row is longer than {max_row_chars:,} characters")
            continue
        yield line_no, _jsonl_row(line_no, raw, max_row_chars)


def _skip_rest_of_line(stream: IO[bytes]) -> None:
    while True:
        piece = stream.readline(_SKIP_CHUNK)
        if not piece or piece.endswith(b"\n"):
            return


def _jsonl_row(line_no: int, raw: bytes, max_row_chars: int) -> Example | Problem:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Problem(line_no, "not UTF-8 text")
    if line_no == 1:
        text = text.removeprefix("\ufeff")
    text = text.rstrip("\r\n")
    if not text.strip():
        return Problem(line_no, "empty row")
    if len(text) > max_row_chars:
        return Problem(line_no, f"row is longer than {max_row_chars:,} characters")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return Problem(line_no, "not valid JSON")
    if not isinstance(value, dict):
        return Problem(line_no, "not a JSON object")
    if "messages" in value:
        return _chat_row(line_no, value["messages"])
    return _prompt_completion_row(line_no, value.get("prompt"), value.get("completion"))


def _chat_row(line_no: int, messages) -> Example | Problem:
    if not isinstance(messages, list) or not messages:
        return Problem(line_no, '"messages" must be a non-empty list')
    parsed = []
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            return Problem(line_no, f"message {index} is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            return Problem(line_no, f"message {index} has role {role!r}; expected one of {', '.join(CHAT_ROLES)}")
        if not isinstance(content, str) or not content.strip():
            return Problem(line_no, f"message {index} has no text content")
        parsed.append((role, content))
    roles = {role for role, _ in parsed}
    if "user" not in roles or "assistant" not in roles:
        return Problem(line_no, "needs at least one user and one assistant message")
    return Example(tuple(parsed))


def _prompt_completion_row(line_no: int, prompt, completion) -> Example | Problem:
    missing = [name for name, value in (("prompt", prompt), ("completion", completion))
               if not isinstance(value, str) or not value.strip()]
    if missing:
        return Problem(line_no, f'needs "messages", or text in {" and ".join(repr(m) for m in missing)}')
    return Example((("user", prompt), ("assistant", completion)))


# --- CSV ----------------------------------------------------------------------


def _csv_rows(stream: IO[bytes], max_row_chars: int) -> Iterator[tuple[int, Example | Problem]]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    reader = csv.reader(_bounded_lines(text, max_row_chars))
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = {name.strip().lower(): index for index, name in enumerate(header)}
        if "prompt" not in columns or "completion" not in columns:
            yield 1, Problem(1, 'the header row needs "prompt" and "completion" columns')
            return
        prompt_at, completion_at = columns["prompt"], columns["completion"]
        for record in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in record):
                yield line_no, Problem(line_no, "empty row")
                continue
            if sum(map(len, record)) > max_row_chars:
                yield line_no, Problem(line_no, f"row is longer than {max_row_chars:,} characters")
                continue
            prompt = record[prompt_at] if prompt_at < len(record) else None
            completion = record[completion_at] if completion_at < len(record) else None
            yield line_no, _prompt_completion_row(line_no, prompt, completion)
    except UnicodeDecodeError:
        yield reader.line_num + 1, Problem(reader.line_num + 1, "not UTF-8 text; the rest of the file was not read")
    except (csv.Error, _LineTooLong) as error:
        line_no = reader.line_num + 1
        yield line_no, Problem(line_no, f"{error}; the rest of the file was not read")


class _LineTooLong(Exception):
    """A line longer than any row that could pass; the rest of a CSV file cannot be read past it."""


def _bounded_lines(text: IO[str], max_row_chars: int) -> Iterator[str]:
    """Lines of ``text``, refusing one so long that a row built from it could not pass."""
    while True:
        line = text.readline(max_row_chars + 2)
        if not line:
            return
        if len(line) > max_row_chars + 1 and not line.endswith("\n"):
            raise _LineTooLong(f"row is longer than {max_row_chars:,} characters")
        yield line

