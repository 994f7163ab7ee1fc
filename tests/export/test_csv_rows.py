"""csv_rows: the cells and rows of the CSV exports, and that CSV carries them intact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bson import DatetimeMS, Int64, ObjectId

from studychat.export.cli import csv_writer
from studychat.export.csv_rows import (
    cell,
    chat_log_row,
    flatten_tasks,
    last_user_message,
    message_rows,
    participant_row,
    reply_text,
    tasks_path,
)

SAVED = DatetimeMS(1714564800500)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (True, "TRUE"),
        (False, "FALSE"),
        (3, "3"),
        (Int64(2**40), "1099511627776"),
        (1.5, "1.5"),
        (float("nan"), "NaN"),
        (float("inf"), "Inf"),
        (float("-inf"), "-Inf"),
        ('text, with "quotes"\nand lines', 'text, with "quotes"\nand lines'),
        (SAVED, "2024-05-01T12:00:00.500Z"),
        (datetime(2024, 5, 1, 12, tzinfo=UTC), "2024-05-01T12:00:00.000Z"),
        (DatetimeMS(2**62), str(2**62)),
        (ObjectId("665f1c2e8f1b2a3c4d5e6f70"), "665f1c2e8f1b2a3c4d5e6f70"),
        ({"arm": "B", "n": [1, 2]}, '{"arm":"B","n":[1,2]}'),
        (["ä", None], '["ä",null]'),
    ],
)
def test_cells(value, expected):
    assert cell(value) == expected


def record(**extra) -> dict:
    return {
        "_id": "P1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": 'He said "hi",\nthen left.'},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        ],
        "tasks": {"q1": 3, "block": {"a": True, "b": {"c": "x"}}, "list": [1, 2], "empty": {}},
        "condition": {"arm": "B"},
        "savedAt": SAVED,
        **extra,
    }


def test_one_message_row_per_message_with_turns_from_one():
    rows = list(message_rows(record()))
    head = ["P1", '{"arm":"B"}', "2024-05-01T12:00:00.500Z"]
    assert rows == [
        [*head, "1", "system", "Be brief."],
        [*head, "2", "user", 'He said "hi",\nthen left.'],
        [*head, "3", "assistant", '[{"type":"text","text":"ok"}]'],
    ]


def test_messages_that_are_not_objects_keep_their_content():
    rows = list(message_rows(record(messages=["plain", 7], condition="control")))
    assert [row[3:] for row in rows] == [["1", "", "plain"], ["2", "", "7"]]
    assert rows[0][1] == "control"


def test_a_record_without_messages_has_no_message_rows():
    assert list(message_rows(record(messages=[]))) == []
    assert list(message_rows(record(messages=None))) == []


def test_tasks_flatten_to_dotted_columns_in_order():
    assert flatten_tasks(record()["tasks"]) == {
        "tasks.q1": 3,
        "tasks.block.a": True,
        "tasks.block.b.c": "x",
        "tasks.list": [1, 2],
        "tasks.empty": {},
    }
    assert flatten_tasks(None) == {}
    assert flatten_tasks("free text") == {"tasks": "free text"}


def test_participant_row_fills_every_column_and_leaves_missing_ones_empty():
    columns = ["tasks.q1", "tasks.block.a", "tasks.other", "tasks.list"]
    assert participant_row(record(), columns) == [
        "P1",
        '{"arm":"B"}',
        "2024-05-01T12:00:00.500Z",
        "3",
        "TRUE",
        "",
        "[1,2]",
    ]


def chat_entry(**extra) -> dict:
    return {
        "_id": "job-1",
        "participantId": "P1",
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": "second, last"},
        ],
        "status": "finished",
        "response": {
            "model": "gpt-4o-mini-2024",
            "choices": [{"message": {"role": "assistant", "content": "Reply\nhere"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        },
        "queuedAt": DatetimeMS(1714564800000),
        "startedAt": DatetimeMS(1714564800250),
        "endedAt": DatetimeMS(1714564801999),
        "model": "gpt-4o-mini",
        "attempts": 1,
        "error": None,
        **extra,
    }


def test_chat_log_row_summarises_one_job():
    assert chat_log_row(chat_entry()) == [
        "job-1",
        "P1",
        "finished",
        "gpt-4o-mini",
        "12",
        "3",
        "15",
        "1",
        "2024-05-01T12:00:00.000Z",
        "2024-05-01T12:00:00.250Z",
        "2024-05-01T12:00:01.999Z",
        "second, last",
        "Reply\nhere",
        "",
    ]


def test_chat_log_row_of_a_failed_job_names_the_error():
    row = chat_log_row(
        chat_entry(status="failed", response=None, usage=None, error="The model timed out.")
    )
    assert row[2:8] == ["failed", "gpt-4o-mini", "", "", "", "1"]
    assert row[12:] == ["", "The model timed out."]


def test_chat_log_row_falls_back_to_the_response_for_model_and_usage():
    row = chat_log_row(chat_entry(model=None, queuedAt="2024-05-01T12:00:00+00:00"))
    assert row[3:7] == ["gpt-4o-mini-2024", "12", "3", "15"]
    assert row[8] == "2024-05-01T12:00:00+00:00"


def test_last_user_message_and_reply_tolerate_odd_shapes():
    assert last_user_message(None) == last_user_message([{"role": "assistant"}]) is None
    assert reply_text({}) is None
    assert reply_text({"choices": []}) is None
    assert reply_text({"choices": [{"message": None}]}) is None


def test_tasks_file_sits_beside_the_messages_file():
    assert tasks_path(Path("out/data.csv")) == Path("out/data-tasks.csv")
    assert tasks_path(Path("export")) == Path("export-tasks.csv")


def test_csv_round_trip_recovers_every_cell_exactly():
    tricky = [
        'a,b "c"',
        "line one\nline two",
        "carriage\rreturn",
        "windows\r\nline",
        "  padded  ",
        "ünïcödé 😀",
        "",
        '"',
    ]
    rows = [["P1", text] for text in tricky]
    buffer = io.StringIO(newline="")
    csv_writer(buffer).writerows(rows)
    assert list(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) == rows
