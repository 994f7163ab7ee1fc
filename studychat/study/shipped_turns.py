"""What a batch of shipped transcripts adds to study sessions: answers and delivery times.

The transcript shipper settles each session turn whose answer it ships, and notes when
the participant's client got the answer. The web settles a pending turn too, when the
participant sends the next message first, folding in the delivery time it finds in
Redis. So, before writing, a read of the batch's sessions tells which turns are
still pending and which answers still lack their delivery time: a write that would
change nothing is not sent (each costs the database as much as one that does), and a
delivery time that comes in the same batch as its answer is written with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.database import Database

from studychat.chat.provenance import DELIVERED
from studychat.study.sessions import note_delivery, sessions, settle_turn

# The fields of a session the batch's read needs: its pending turn and which answers
# have a delivery time, not the text of its conversation.
STATE_FIELDS = {
    "pending.jobId": 1,
    "messages.jobId": 1,
    "messages.role": 1,
    "messages.deliveredAt": 1,
}
# Sessions read per query. A long $in costs some servers far more per id than a short
# one (SecantusDB: 330 ms for 500 ids at once, 63 ms in queries of 50); MongoDB looks
# each id up in the _id index either way.
READ_AT_ONCE = 50


@dataclass(frozen=True)
class ShippedAnswer:
    """A session turn's end, as its transcript entry carries it."""

    participant_id: str
    job_id: str
    turn: Mapping[str, Any]


@dataclass(frozen=True)
class Delivery:
    """When the participant's client first got the answer of a session's job."""

    participant_id: str
    delivered_at: Any


def record_batch(
    db: Database, answers: list[ShippedAnswer], deliveries: Mapping[str, Delivery]
) -> None:
    """Settle the batch's pending turns and note its deliveries (keyed by job id), once."""
    states = session_states(db, participants_of(answers, deliveries.values()))
    unwritten = dict(deliveries)
    for answer in answers:
        if pending_job(states.get(answer.participant_id)) != answer.job_id:
            continue  # the web settled it already, or the session is gone
        delivery = unwritten.pop(answer.job_id, None) if "role" in answer.turn else None
        turn = {**answer.turn, DELIVERED: delivery.delivered_at} if delivery else answer.turn
        if not settle_turn(db, answer.participant_id, answer.job_id, turn) and delivery:
            unwritten[answer.job_id] = delivery  # settled meanwhile: note it on its own
    for job_id, delivery in unwritten.items():
        if lacks_delivery(states.get(delivery.participant_id), job_id):
            note_delivery(db, delivery.participant_id, job_id, delivery.delivered_at)


def participants_of(answers: Iterable[ShippedAnswer], deliveries: Iterable[Delivery]) -> set[str]:
    """The sessions a batch touches."""
    return {answer.participant_id for answer in answers} | {
        delivery.participant_id for delivery in deliveries
    }


def session_states(db: Database, participant_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The pending turn and answers' delivery times of these sessions, read together."""
    ids, states = sorted(participant_ids), dict[str, dict[str, Any]]()
    for start in range(0, len(ids), READ_AT_ONCE):
        chunk = ids[start : start + READ_AT_ONCE]
        states.update(
            (state["_id"], state)
            for state in sessions(db).find({"_id": {"$in": chunk}}, STATE_FIELDS)
        )
    return states


def pending_job(state: Mapping[str, Any] | None) -> str | None:
    """The job id of the session's pending turn, if it has one."""
    pending = (state or {}).get("pending") or {}
    return pending.get("jobId")


def lacks_delivery(state: Mapping[str, Any] | None, job_id: str) -> bool:
    """Whether a delivery note for `job_id` could still change the session.

    Its answer may not be in the conversation yet (a note then changes nothing, as
    before); it is skipped only when the answer already has its time, or there is no
    session.
    """
    if state is None:
        return False
    for message in state.get("messages") or []:
        if message.get("jobId") == job_id and message.get("role") == "assistant":
            return message.get(DELIVERED) is None
    return True
