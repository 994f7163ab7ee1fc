"""Rows of the CSV exports: tidy tables that pandas and R read as they are.

`data` becomes two tables joined on `participantId`:
- messages, long format: one row per message (participantId, condition, savedAt,
  turn, role, content);
- participants, wide format: one row per participant with one column per task
  answer, nested answers flattened to dotted names (`tasks.q1`, `tasks.block.a`; a key
  that holds a dot itself is quoted: `tasks["q1.1"]`).
Keeping the task answers out of the message rows keeps both tables tidy: one
observation per row, nothing repeated on every message.

`chat_log` becomes one row per chat job.

Cells: null is empty; booleans `TRUE`/`FALSE` (the spelling both R's read.csv and
pandas take for logicals); numbers as Python writes them (NaN, Inf, -Inf for the
specials, which pandas and R both read as numbers); dates ISO 8601 UTC
with milliseconds (`2024-05-01T12:00:00.500Z`); any object or array (a condition,
a multi-part message content, a list answer) as compact JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import DatetimeMS, ObjectId
from bson.errors import InvalidBSON

from studychat.export.jsonl import json_line

MESSAGE_COLUMNS = ["participantId", "condition", "savedAt", "turn", "role", "content"]
PARTICIPANT_COLUMNS = ["participantId", "condition", "savedAt"]
CHAT_LOG_COLUMNS = [
    "jobId",
    "participantId",
    "status",
    "model",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "attempts",
    "queuedAt",
    "startedAt",
    "endedAt",
    "lastUserMessage",
    "reply",
    "error",
]
TASKS_PREFIX = "tasks"
# One row per message of every conversation: sessions' server-held ones, and the legacy
# API's turns as chat_log has them.
TURN_TIMES = ["receivedAt", "queuedAt", "startedAt", "firstTokenAt", "answeredAt"]
TURN_TIMES += ["releasedAt", "deliveredAt"]
TURN_COLUMNS = [
    "participantId",
    "source",
    "condition",
    "studyHash",
    "turn",
    "role",
    "content",
    "jobId",
    *TURN_TIMES,
    "queueWaitS",
    "modelS",
    "deliveryDelayS",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "model",
    "systemFingerprint",
    "attempts",
    "error",
]


def cell(value: Any) -> str:
    """One value as CSV cell text (see the module docstring for the rules)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return _float_cell(value)
    if isinstance(value, DatetimeMS | datetime):
        return _date_cell(value)
    if isinstance(value, ObjectId):
        return str(value)
    return json_line(value)


def _float_cell(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return repr(value)


def _date_cell(value: DatetimeMS | datetime) -> str:
    """ISO 8601 UTC with milliseconds; beyond Python's years, the exact milliseconds."""
    if isinstance(value, DatetimeMS):
        try:
            moment = value.as_datetime()
        except (OverflowError, InvalidBSON):  # beyond Python's years: the exact milliseconds
            return str(int(value))
    else:
        moment = value
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def message_rows(record: Mapping[str, Any]) -> Iterator[list[str]]:
    """The message rows of one participant record, `turn` counting from 1."""
    head = [cell(record.get("_id")), cell(record.get("condition")), cell(record.get("savedAt"))]
    messages = record.get("messages")
    for turn, message in enumerate(messages if isinstance(messages, list) else [], start=1):
        if isinstance(message, Mapping):
            role, content = message.get("role"), message.get("content")
        else:
            role, content = None, message
        yield [*head, str(turn), cell(role), cell(content)]


def flatten_tasks(tasks: Any) -> dict[str, Any]:
    """Task answers by dotted column name: {"a": {"b": 1}} gives {"tasks.a.b": 1}."""
    if not isinstance(tasks, Mapping):
        return {} if tasks is None else {TASKS_PREFIX: tasks}
    flat: dict[str, Any] = {}
    for key, value in tasks.items():
        _flatten_into(flat, TASKS_PREFIX + column_segment(key), value)
    return flat


def column_segment(key: str) -> str:
    """`.key`, or `["key"]` (JSON-quoted) for a key that holds a dot or starts with `[`.

    Keys are stored as sent, dots included, so `{"q1.1": 1}` and `{"q1": {"1": 1}}` must
    not share a column: they become `tasks["q1.1"]` and `tasks.q1.1`.
    """
    if "." in key or key.startswith("[") or not key:
        return "[" + json.dumps(key, ensure_ascii=False) + "]"
    return "." + key


def _flatten_into(flat: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten_into(flat, name + column_segment(key), item)
    else:
        flat[name] = value


def participant_row(record: Mapping[str, Any], task_columns: list[str]) -> list[str]:
    """One participant's row: id, condition, savedAt, then each task column (empty if absent)."""
    answers = flatten_tasks(record.get("tasks"))
    head = [cell(record.get("_id")), cell(record.get("condition")), cell(record.get("savedAt"))]
    return head + [cell(answers.get(name)) for name in task_columns]


def chat_log_row(entry: Mapping[str, Any]) -> list[str]:
    """One chat job's row; model and usage from the entry, else from the model's response."""
    response = entry.get("response")
    response = response if isinstance(response, Mapping) else {}
    usage = entry.get("usage") or response.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    values = [
        entry.get("_id"),
        entry.get("participantId"),
        entry.get("status"),
        entry.get("model") or response.get("model"),
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        usage.get("total_tokens"),
        entry.get("attempts"),
        entry.get("queuedAt"),
        entry.get("startedAt"),
        entry.get("endedAt"),
        last_user_message(entry.get("messages")),
        reply_text(response),
        entry.get("error"),
    ]
    return [cell(value) for value in values]


def last_user_message(messages: Any) -> Any:
    """The content of the last message whose role is "user", or None."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return message.get("content")
    return None


def reply_text(response: Mapping[str, Any]) -> Any:
    """The model's reply in an OpenAI chat completion (first choice), or None."""
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message")
    return message.get("content") if isinstance(message, Mapping) else None


def tasks_path(messages_path: Path) -> Path:
    """Where the participants table goes beside `messages_path`: data.csv → data-tasks.csv."""
    stem = messages_path.name.removesuffix(".csv")
    return messages_path.with_name(f"{stem}-tasks.csv")


def session_turn_rows(session: Mapping[str, Any]) -> Iterator[list[str]]:
    """The rows of one session's conversation, `turn` counting messages from 1."""
    messages = [m for m in session.get("messages") or [] if isinstance(m, Mapping)]
    received = {m.get("jobId"): m.get("receivedAt") for m in messages if m.get("role") == "user"}
    for turn, message in enumerate(messages, start=1):
        timing = {**message, "receivedAt": received.get(message.get("jobId"))}
        if message.get("role") == "user":
            timing = {"receivedAt": message.get("receivedAt")}
        yield turn_row(session.get("_id"), "session", session, turn, message, timing)


def legacy_turn_rows(entry: Mapping[str, Any], first_turn: int) -> Iterator[list[str]]:
    """The two rows of one legacy chat job: its last user message, then the answer."""
    response = entry.get("response")
    reply = reply_text(response) if isinstance(response, Mapping) else None
    question = {"role": "user", "content": last_user_message(entry.get("messages"))}
    answer = {"role": "assistant", "content": reply, "jobId": entry.get("_id")}
    participant = entry.get("participantId")
    yield turn_row(
        participant, "legacy", {}, first_turn, question, {"receivedAt": entry.get("receivedAt")}
    )
    yield turn_row(participant, "legacy", {}, first_turn + 1, {**entry, **answer}, entry)


def turn_row(
    participant: Any,
    source: str,
    study: Mapping[str, Any],
    turn: int,
    message: Mapping[str, Any],
    timing: Mapping[str, Any],
) -> list[str]:
    """One message's row of the turns table."""
    given = message.get("usage")
    usage: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    values = [
        participant,
        source,
        study.get("condition", message.get("condition")),
        study.get("studyHash", message.get("studyHash")),
        turn,
        message.get("role"),
        message.get("content"),
        message.get("jobId"),
        *[timing.get(name) for name in TURN_TIMES],
        seconds_between(timing.get("queuedAt"), timing.get("startedAt")),
        seconds_between(timing.get("startedAt"), timing.get("answeredAt")),
        seconds_between(timing.get("answeredAt"), timing.get("deliveredAt")),
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        usage.get("total_tokens"),
        message.get("model"),
        message.get("systemFingerprint"),
        message.get("attempts"),
        message.get("error"),
    ]
    return [cell(value) for value in values]


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from `start` to `end` (dates), to the millisecond; None without both."""
    if not isinstance(start, DatetimeMS | datetime) or not isinstance(end, DatetimeMS | datetime):
        return None
    return round((_millis(end) - _millis(start)) / 1000, 3)


def _millis(moment: DatetimeMS | datetime) -> int:
    if isinstance(moment, DatetimeMS):
        return int(moment)
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(aware.timestamp() * 1000)
