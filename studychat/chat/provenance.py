"""When and how a chat turn happened: the timing and provenance every turn records.

The same facts go to the turn's `chat_log` entry and, for a study session, to the answer
in the server-held conversation: when the web received the message, RQ queued it, a
worker started it, the first token arrived (streamed turns), the answer was complete;
how many attempts it took; the model as it answered, its `system_fingerprint`, the
parameters that were sent, and the usage. Times are UTC ISO 8601 with milliseconds and
are stored as dates; within a turn they are in this order (they come from the clocks of
the web and worker machines, which NTP keeps within milliseconds of each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq.job import Job

# The request fields that shape an answer, as the worker sent them.
SENT_PARAMETERS = ("temperature", "top_p", "seed", "max_tokens", "max_completion_tokens")
# Every time field of a turn, in the order they happen.
TIME_FIELDS = (
    "receivedAt",
    "queuedAt",
    "startedAt",
    "firstTokenAt",
    "answeredAt",
    "releasedAt",
    "deliveredAt",
    "endedAt",
    "failedAt",
)
# When the participant's client first got the answer: the last of a turn's times.
DELIVERED = "deliveredAt"


def utc_iso(moment: datetime | None = None) -> str:
    """`moment` (default: now) as UTC ISO 8601 with milliseconds."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:  # RQ keeps naive UTC times
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def as_dates(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its ISO time fields (TIME_FIELDS) turned into datetimes."""
    return {
        key: datetime.fromisoformat(value)
        if key in TIME_FIELDS and isinstance(value, str)
        else value
        for key, value in document.items()
    }


@dataclass(frozen=True)
class CallTiming:
    """What the worker saw of its model call."""

    first_token_at: str | None
    answered_at: str


def turn_facts(
    job: Job,
    request: dict[str, Any],
    timing: CallTiming,
    answer: dict[str, Any] | None,
    attempts: int | None,
    usage: dict[str, Any] | None,
    received_at: str | None,
) -> dict[str, Any]:
    """The timing and provenance of one finished or failed turn (JSON, times as text)."""
    answer = answer or {}
    return {
        "receivedAt": received_at,
        "queuedAt": utc_iso(job.enqueued_at) if job.enqueued_at else None,
        "startedAt": utc_iso(job.started_at) if job.started_at else None,
        "firstTokenAt": timing.first_token_at,
        "answeredAt": timing.answered_at,
        "attempts": attempts,
        "model": answer.get("model") or request["model"],
        "systemFingerprint": answer.get("system_fingerprint"),
        "parameters": {key: request[key] for key in SENT_PARAMETERS if key in request},
        "usage": usage,
    }
