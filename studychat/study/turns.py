"""A chat turn of a study session: what the model is sent, and the rules a turn obeys.

The server holds the conversation, so the participant sends only the new message; the
model gets the condition's system prompt, the conversation so far, then that message.
A turn is refused while the previous answer is pending (409), after `max_turns` (429),
or when a token budget is spent (429). A pending turn whose job has ended is settled
here from its outcome before anything else, in case the worker's shipper has not yet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from redis import Redis
from rq import Queue

from studychat.chat.budgets import PARTICIPANT, admit_chat
from studychat.chat.outcomes import (
    DELIVERED,
    FAILED_STATUSES,
    outcome_key,
    queue_state_read,
    state_read,
)
from studychat.chat.provenance import utc_iso
from studychat.chat.session_turn import SessionTurn
from studychat.chat.task_queue import enqueue_chat
from studychat.exceptions import Refused
from studychat.settings import Settings
from studychat.study import sessions
from studychat.study.definition import Condition, Study

PENDING = "The answer to your previous message is still on its way; wait for it, then send."
AT_END = "This conversation has reached its end; no more messages can be sent."
TOO_LARGE = (
    "This conversation holds too many images to store with one more; send the message"
    " without an image."
)
# MongoDB stores at most 16 MiB in one document; a session keeps its whole conversation.
MAX_SESSION_BYTES = 15 * 1024 * 1024
# Room kept for the answer and the turn's timing: an answer of many thousand tokens.
ANSWER_ROOM_BYTES = 256 * 1024
CONDITION_GONE = "This session's condition is no longer in the study file; it cannot go on."
LOST = "The answer to this message was lost; please send it again."
FAILED = "The model call for this message failed; please send it again."
BUDGET_SPENT = {
    PARTICIPANT: "This session's token budget is spent; no more chat turns can be started.",
    "study": "The study's token budget is spent; no more chat turns can be started.",
}
# A pending turn whose job Redis does not know is taken as lost only after this long:
# before, its job may just not be queued yet.
LOST_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class Turn:
    """What one session turn needs from the web: its clients, settings and study."""

    db: Database
    redis: Redis
    queue: Queue
    settings: Settings
    study: Study
    # Where the worker announces the turn's writes (enqueue_chat's updates_channel).
    updates_channel: str | None = None


def model_messages(
    condition: Condition, conversation: list[Mapping[str, Any]], message: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """System prompt, the conversation held (failed turns left out), then the new message."""
    sent = [{"role": "system", "content": condition.system_prompt}]
    for held in conversation:
        if held["role"] in ("user", "assistant") and "error" not in held:
            sent.append(_as_sent(held))
    return [*sent, _as_sent({"role": "user", **message})]


def _as_sent(message: Mapping[str, Any]) -> dict[str, Any]:
    kept = {"role": message["role"], "content": message["content"]}
    return {**kept, "image": message["image"]} if message.get("image") else kept


def start(
    turn: Turn,
    session: dict[str, Any],
    message: dict[str, Any],
    stream: bool,
    received_at: str,
    job_id: str,
) -> None:
    """Queue the session's next turn as `job_id` (see new_job_id), or raise Refused.

    `received_at` (UTC ISO 8601) is when the web received the message.
    """
    session = settle_pending(turn, session)
    condition = admissible_condition(turn.study, session, message)
    messages = model_messages(condition, session["messages"], message)
    received = datetime.fromisoformat(received_at)
    if not sessions.start_turn(turn.db, session["_id"], job_id, message, received):
        raise Refused(409, PENDING)
    try:
        _admit_and_enqueue(turn, session, condition, messages, job_id, stream, received_at)
    except BaseException:
        sessions.abandon_turn(turn.db, session["_id"], job_id)
        raise


def admissible_condition(
    study: Study, session: dict[str, Any], message: dict[str, Any]
) -> Condition:
    """The session's condition, if a turn may start now; else Refused saying why."""
    if awaited_job(session):
        raise Refused(409, PENDING)
    if sessions.turns_taken(session) >= study.max_turns:
        raise Refused(429, AT_END)
    condition = study.conditions.get(session["condition"])
    if condition is None:  # the study file changed under a running session
        raise Refused(409, CONDITION_GONE)
    if stored_bytes([*session["messages"], message]) + ANSWER_ROOM_BYTES > MAX_SESSION_BYTES:
        raise Refused(413, TOO_LARGE)
    return condition


def stored_bytes(messages: list[dict[str, Any]]) -> int:
    """About how many bytes the conversation takes in its session document (text, images)."""
    return sum(len(m.get("content") or "") * 4 + len(m.get("image") or "") + 512 for m in messages)


def _admit_and_enqueue(
    turn: Turn,
    session: dict[str, Any],
    condition: Condition,
    messages: list[dict[str, Any]],
    job_id: str,
    stream: bool,
    received_at: str,
) -> None:
    key = sessions.token_key(session["token"])
    spent = admit_chat(turn.redis, job_id, key, messages, turn.settings, condition.max_tokens)
    if spent:
        raise Refused(429, BUDGET_SPENT[spent])
    job_turn = SessionTurn(
        participant_id=session["_id"],
        study=turn.study.name,
        study_hash=turn.study.hash,
        condition=condition.name,
        model=condition.model,
        max_tokens=condition.max_tokens,
        budget_key=key,
        release_at=time.time() + condition.min_reply_seconds,
        options=condition.model_options(),
    )
    enqueue_chat(
        turn.queue,
        messages,
        session["_id"],
        turn.settings,
        job_id,
        stream,
        job_turn.to_kwargs(),
        received_at,
        turn.updates_channel,
    )


def settle_pending(turn: Turn, session: dict[str, Any]) -> dict[str, Any]:
    """The session with its pending turn settled if the job has ended and been released."""
    pending = session.get("pending")
    if not pending:
        return session
    settled = ended_turn(turn.redis, pending["jobId"], pending["receivedAt"])
    if settled is None:
        return session
    if sessions.settle_turn(turn.db, session["_id"], pending["jobId"], settled):
        return sessions.with_turn_settled(session, pending["jobId"], settled)
    # Settled meanwhile by the worker's shipper (or another tab): as it was stored.
    return sessions.sessions(turn.db).find_one({"_id": session["_id"]}) or session


def ended_turn(connection: Redis, job_id: str, received_at: datetime) -> dict[str, Any] | None:
    """What the conversation gains from a released job's end; None while it is not over."""
    # One round trip: the job's state, and the turn its outcome holds with its delivery.
    pipe = connection.pipeline(transaction=False)
    queue_state_read(pipe, job_id)
    pipe.hmget(outcome_key(job_id), "turn", DELIVERED)
    *state_answers, (stored, delivered) = pipe.execute()
    state = state_read(state_answers)
    if state.body is not None:
        if not stored or not state.released:
            return None
        settled: dict[str, Any] = json.loads(stored)
        if delivered and "role" in settled:  # handed to the participant before it was settled
            settled[DELIVERED] = delivered.decode() if isinstance(delivered, bytes) else delivered
        return settled
    if state.rq_status in FAILED_STATUSES:
        return _failure(FAILED)
    if state.rq_status is None and datetime.now(UTC) - received_at > LOST_AFTER:
        return _failure(LOST)
    return None


def _failure(message: str) -> dict[str, Any]:
    return {"error": message, "failedAt": utc_iso()}


def _unreleased(message: Mapping[str, Any]) -> bool:
    released = message.get("releasedAt")
    return released is not None and released > datetime.now(UTC)


def public_view(session: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conversation as the participant may see it: no answer before its release."""
    kept = ("role", "content", "image", "jobId", "error")
    return [
        {key: message[key] for key in kept if key in message}
        for message in session["messages"]
        if not _unreleased(message)
    ]


def awaited_job(session: Mapping[str, Any]) -> str | None:
    """The job whose answer the participant still awaits: pending, or not yet released."""
    if session.get("pending"):
        return str(session["pending"]["jobId"])
    last = session["messages"][-1] if session["messages"] else {}
    return str(last["jobId"]) if _unreleased(last) else None
