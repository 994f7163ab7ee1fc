"""GET /stream/<jobId>: an answer as server-sent events, delta by delta as the model writes.

Events: `delta` with {"content": delta} for each delta, then one `done` whose data
is the object /check_response returns as "response", or one `error` with
{"error": sentence}. A job that was not streamed arrives as one delta with the
whole text. Each delta carries an id, so a browser's EventSource that reconnects
resumes where it stopped (Last-Event-ID).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context
from redis import Redis

from studychat.chat.answer_stream import deltas_in, queue_deltas_read, read_deltas
from studychat.chat.outcomes import (
    JobState,
    mark_delivered,
    queue_state_read,
    read_state,
    state_read,
)
from studychat.chat.session_turn import answer_text
from studychat.web.api_doc import documented
from studychat.web.errors import error_response
from studychat.web.job_updates import JobUpdates
from studychat.web.routes.chat import FAILED_JOB, UNKNOWN_JOB
from studychat.web.schemas import JOB_ID_PATTERN
from studychat.web.services import services

bp = Blueprint("stream", __name__)

# Seconds between keep-alive comments while a job waits in the queue; they also let the
# server notice a participant who closed the page.
KEEPALIVE_S = 10
STREAM_ID = re.compile(r"^\d+-\d+$")
UNKNOWN_ID = "The jobId in the URL is not one this service issues."
# One event as an SSE parser reads it; `data` is JSON text.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"enum": ["delta", "done", "error"]},
        "data": {"type": "string"},
        "id": {"type": "string"},
    },
}
STREAM_OPERATION = {
    "summary": "A job's answer as server-sent events: delta, then done or error.",
    "tags": ["chat"],
    "parameters": [
        {
            "name": "job_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": JOB_ID_PATTERN},
        },
        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
    ],
    "responses": {
        "200": {
            "description": "The events.",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        "400": {"description": "The jobId is not one this service issues."},
        "404": {"description": "No such job, or it expired."},
        "503": {"description": "Redis cannot be reached right now."},
    },
}


@bp.get("/stream/<job_id>")
@documented(STREAM_OPERATION)
def stream(job_id: str):
    """Relay a job's answer as text/event-stream."""
    if not re.match(JOB_ID_PATTERN, job_id):
        return error_response(400, UNKNOWN_ID)
    made = services()
    state = read_state(made.redis, job_id)
    if state.rq_status is None and state.body is None:
        return error_response(404, UNKNOWN_JOB)
    after = request.headers.get("Last-Event-ID", "0")
    events = relay(made.redis, made.job_updates, job_id, after if STREAM_ID.match(after) else "0")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events), mimetype="text/event-stream", headers=headers)


def relay(connection: Redis, updates: JobUpdates, job_id: str, after: str) -> Iterator[str]:
    """The job's events: deltas as they come, then its outcome.

    Redis is read once each time the worker writes to the job (see job_updates), so a
    batch of deltas is relayed at once and costs one read.
    """
    # Sent at once, so the participant's browser knows the stream is open.
    yield ": connected\n\n"
    sent_text = after != "0"
    with updates.watching(job_id) as woken:
        quiet_since = time.monotonic()
        entries: list[tuple[str, str | None]] = []
        while True:
            woken.clear()
            entries, state = look(connection, job_id, after, with_state=not entries)
            if not entries and state is not None and state.over:  # over, never streamed
                yield from final_events(connection, job_id, state, sent_text)
                return
            for entry_id, text in entries:
                if text is None:
                    state = read_state(connection, job_id)
                    yield from final_events(connection, job_id, state, sent_text)
                    return
                after, sent_text = entry_id, True
                yield sse("delta", {"content": text}, event_id=entry_id)
            if entries:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                yield ": waiting for the model\n\n"
                quiet_since = time.monotonic()
            updates.sleep(job_id, woken, KEEPALIVE_S - (time.monotonic() - quiet_since))


def look(
    connection: Redis, job_id: str, after: str, with_state: bool
) -> tuple[list[tuple[str, str | None]], JobState | None]:
    """The deltas after `after`, and with `with_state` the job's state read with them.

    A streamed job writes its end marker with its outcome; a job not streamed writes no
    deltas at all, so once deltas stop coming (and at first) a look reads the state too,
    in the same transaction: over with no deltas then means a job that was not streamed.
    """
    if not with_state:
        return read_deltas(connection, job_id, after), None
    with connection.pipeline(transaction=True) as pipe:
        queue_deltas_read(pipe, job_id, after)
        queue_state_read(pipe, job_id)
        answer, *state = pipe.execute()
    return deltas_in(answer), state_read(state)


def final_events(connection: Redis, job_id: str, state: JobState, sent_text: bool) -> Iterator[str]:
    """`done` (after the whole text as one delta if none was streamed), or `error`.

    A paced condition's outcome (min_reply_seconds) waits for its release time. Once the
    last event is written, the outcome counts as delivered.
    """
    while state.held_for > 0:
        time.sleep(min(state.held_for, KEEPALIVE_S))
        yield ": pacing\n\n"
    yield from outcome_events(state, sent_text)
    if state.body is not None:
        # Runs when the server asks for more, i.e. once the last event has been written.
        mark_delivered(connection, state, job_id)


def outcome_events(state: JobState, sent_text: bool) -> Iterator[str]:
    """The events of the outcome: `done`, or `error`."""
    if state.body is None or state.status_code != 200:
        outcome = json.loads(state.body) if state.body else {}
        yield sse("error", {"error": outcome.get("error", FAILED_JOB)})
        return
    answer = json.loads(state.body)["response"]
    if not sent_text:
        yield sse("delta", {"content": answer_text(answer)})
    yield sse("done", answer)


def sse(event: str, data: object, event_id: str | None = None) -> str:
    """One server-sent event."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
