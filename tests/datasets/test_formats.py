"""The dataset reader: each accepted shape, and each problem by its line number."""
from __future__ import annotations

import io
import json

import pytest

from webapp.datasets.formats import (
    REPORTED_PROBLEMS, Example, Problem, format_for_filename, read_examples, read_rows, validate,
)

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": "Hello!"}]}


def jsonl(*rows) -> io.BytesIO:
    lines = [row if isinstance(row, (str, bytes)) else json.dumps(row) for row in rows]
    return io.BytesIO(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))


def test_chat_and_prompt_completion_rows_become_chat_examples():
    rows = list(read_examples(jsonl(CHAT, {"prompt": "2+2?", "completion": "4"}), "jsonl", 1000))
    assert rows[0] == Example((("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")))
    assert (rows[0].prompt, rows[0].completion) == ("Be brief.\nHi", "Hello!")
    assert rows[1].as_chat() == {"messages": [{"role": "user", "content": "2+2?"},
                                              {"role": "assistant", "content": "4"}]}


@pytest.mark.parametrize(("line", "reason"), [
    ("", "empty row"),
    ("   ", "empty row"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ({"messages": []}, '"messages" must be a non-empty list'),
    ({"messages": ["hi"]}, "message 1 is not an object"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "message 1 has role 'robot'"),
    ({"messages": [{"role": "user", "content": " "}]}, "message 1 has no text content"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "needs at least one user and one assistant"),
    ({"prompt": "q"}, "'completion'"),
    ({"prompt": 3, "completion": ""}, "'prompt' and 'completion'"),
    (b"\xff\xfe{}", "not UTF-8 text"),
    ("[" * 100_000 + "]" * 100_000, "row is longer than"),
])
def test_each_bad_jsonl_row_is_reported_on_its_line(line, reason):
    report = validate(jsonl(CHAT, line, CHAT), "jsonl", max_row_chars=50_000)
    assert report.rows_accepted == 2
    assert report.problem_count == 1
    assert report.problems[0].line == 2
    assert reason in report.problems[0].reason
    assert not report.ok


def test_an_overlong_line_is_skipped_without_reading_it_whole():
    stream = jsonl(CHAT, "x" * 5_000_000, CHAT)
    rows = list(read_rows(stream, "jsonl", max_row_chars=100))
    assert [type(row) for _, row in rows] == [Problem, Problem, Problem]  # CHAT itself is > 100 characters
    rows = list(read_rows(jsonl(CHAT, "x" * 5_000_000, CHAT), "jsonl", max_row_chars=1000))
    assert [line for line, row in rows if isinstance(row, Problem)] == [2]
    assert len(rows) == 3


def test_the_report_keeps_the_first_problems_and_counts_all():
    report = validate(jsonl(*(["nope"] * (REPORTED_PROBLEMS + 7))), "jsonl", 1000)
    assert report.problem_count == REPORTED_PROBLEMS + 7
    assert [p.line for p in report.problems] == list(range(1, REPORTED_PROBLEMS + 1))
    assert report.rows_accepted == 0


def test_an_empty_file_is_a_problem():
    assert validate(io.BytesIO(b""), "jsonl", 1000).problems == [Problem(1, "the file has no rows")]


def test_csv_rows_with_a_multiline_cell_and_problems():
    data = ('\ufeffPrompt,completion\n'
            '"What is 2+2?","4"\n'
            ',\n'
            '"A question\nover two lines",an answer\n'
            'no answer,\n').encode()
    rows = list(read_rows(io.BytesIO(data), "csv", 1000))
    assert [(line, row.reason if isinstance(row, Problem) else row.completion) for line, row in rows] == [
        (2, "4"), (3, "empty row"), (5, "an answer"), (6, "needs \"messages\", or text in 'completion'"),
    ]
    assert rows[2][1].prompt == "A question\nover two lines"


def test_csv_without_the_columns_or_in_another_encoding():
    assert validate(io.BytesIO(b"question,answer\na,b\n"), "csv", 1000).problems[0].reason.startswith(
        'the header row needs "prompt"')
    report = validate(io.BytesIO(b"prompt,completion\na,b\n\xff,c\n"), "csv", 1000)
    assert report.problems[0].reason.startswith("not UTF-8 text")


def test_read_examples_refuses_a_file_that_no_longer_validates():
    with pytest.raises(ValueError, match="line 2"):
        list(read_examples(jsonl(CHAT, "oops"), "jsonl", 1000))


@pytest.mark.parametrize(("name", "fmt"), [("a.jsonl", "jsonl"), ("B.JSON", "jsonl"), ("c.csv", "csv"),
                                           ("d.txt", None), ("noext", None)])
def test_format_from_the_file_name(name, fmt):
    assert format_for_filename(name) == fmt
