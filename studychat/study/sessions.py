"""Participant sessions in MongoDB: who is in which condition, and the conversation so far.

One document per participant (`_id` = participantId) holds the token the server issued,
the condition, the study's name and hash, Prolific's ids and the conversation. Turns
change it with conditional updates only, so a race between two tabs, or between the
worker's transcript shipper and the web settling the same turn, changes it once:
- `start_turn` claims the one pending slot and appends the participant's message;
- `settle_turn` appends the answer (or marks the message failed) if that turn is still
  the pending one, and frees the slot.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from studychat.chat.provenance import as_dates
from studychat.store.database import SESSIONS_COLLECTION
from studychat.study.assignment import next_condition
from studychat.study.definition import Study

logger = logging.getLogger(__name__)

# How long a request waits for a session another request is creating for the same id.
CONCURRENT_CREATION_WAIT_S = 5.0


@dataclass(frozen=True)
class Opened:
    """A session as POST /sessions hands it out, and whether it was just created."""

    session: dict[str, Any]
    created: bool


def new_token() -> str:
    """A session token: 256 random bits, URL-safe, unrelated to any participant id."""
    return secrets.token_urlsafe(32)


def token_key(token: str) -> str:
    """The name limits and budgets count a session under: its token's hash, never an id."""
    return "session:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def sessions(db: Database) -> Collection:
    """The sessions collection, its token index made on first use in this process."""
    collection = db[SESSIONS_COLLECTION]
    if db.name not in _indexed:
        collection.create_index("token", unique=True)
        _indexed.add(db.name)
    return collection


_indexed: set[str] = set()


def open_session(
    db: Database, study: Study, participant_id: str, prolific: Mapping[str, Any], ttl_s: int
) -> Opened:
    """The participant's session: resumed (its expiry renewed), or created and assigned."""
    collection = sessions(db)
    expires = datetime.now(UTC) + timedelta(seconds=ttl_s)
    existing = collection.find_one_and_update(
        {"_id": participant_id},
        {"$set": {"expiresAt": expires, "lastActiveAt": datetime.now(UTC)}},
        return_document=ReturnDocument.AFTER,
    )
    if existing is None:
        try:
            collection.insert_one(_placeholder(participant_id, study, prolific, expires))
        except DuplicateKeyError:  # another request for this id got there first
            return Opened(_wait_for_assignment(collection, participant_id), created=False)
    elif existing.get("condition") is not None:
        return Opened(existing, created=False)
    return Opened(_assign(collection, db, study, participant_id), created=True)


def _placeholder(
    participant_id: str, study: Study, prolific: Mapping[str, Any], expires: datetime
) -> dict[str, Any]:
    """A session not yet assigned: it claims the participant id before a slot is drawn."""
    return {
        "_id": participant_id,
        "token": new_token(),
        "study": study.name,
        "studyHash": study.hash,
        "condition": None,
        "prolific": dict(prolific),
        "createdAt": datetime.now(UTC),
        "lastActiveAt": datetime.now(UTC),
        "expiresAt": expires,
        "messages": [],
    }


def _assign(collection: Collection, db: Database, study: Study, participant_id: str) -> dict:
    """Draw the participant's condition and write it with the opening message."""
    name = next_condition(db, study.name, study.weights)
    opening = study.conditions[name].opening_message
    messages = [{"role": "assistant", "content": opening, "opening": True}] if opening else []
    assigned = collection.find_one_and_update(
        {"_id": participant_id, "condition": None},
        {"$set": {"condition": name, "messages": messages}},
        return_document=ReturnDocument.AFTER,
    )
    # None: a concurrent request completed the same placeholder first; its draw stands.
    return assigned or _wait_for_assignment(collection, participant_id)


def _wait_for_assignment(collection: Collection, participant_id: str) -> dict[str, Any]:
    """The session another request is creating, once it has its condition."""
    deadline = time.monotonic() + CONCURRENT_CREATION_WAIT_S
    while True:
        found = collection.find_one({"_id": participant_id})
        if found and found.get("condition") is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"session of {participant_id!r} was not assigned in time")
        time.sleep(0.05)


def find_by_token(db: Database, token: str) -> dict[str, Any] | None:
    """The assigned, unexpired session this token belongs to."""
    found = sessions(db).find_one({"token": token})
    if not found or found.get("condition") is None:
        return None
    if found["expiresAt"] <= datetime.now(UTC):
        return None
    return found


def turns_taken(session: Mapping[str, Any]) -> int:
    """The participant's messages that count as turns: all but those whose call failed."""
    return sum(1 for m in session["messages"] if m["role"] == "user" and "error" not in m)


def start_turn(
    db: Database, participant_id: str, job_id: str, message: dict[str, Any], received: datetime
) -> bool:
    """Append the participant's message as the pending turn; False if one is pending."""
    sent = {"role": "user", **message, "jobId": job_id, "receivedAt": received}
    claimed = sessions(db).update_one(
        {"_id": participant_id, "pending": None, "savedAt": None},
        {
            "$set": {
                "pending": {"jobId": job_id, "receivedAt": received},
                "lastActiveAt": received,
            },
            "$push": {"messages": sent},
        },
    )
    return claimed.modified_count == 1


def abandon_turn(db: Database, participant_id: str, job_id: str) -> None:
    """Take back a turn that was never queued (refused by a budget, or Redis was down)."""
    sessions(db).update_one(
        {"_id": participant_id, "pending.jobId": job_id},
        {"$pull": {"messages": {"jobId": job_id}}, "$unset": {"pending": ""}},
    )


def settle_turn(db: Database, participant_id: str, job_id: str, turn: Mapping[str, Any]) -> bool:
    """Record the job's answer (or its failure) if the turn is still pending; whether it was."""
    stored = as_dates(dict(turn))
    if "error" in stored:
        update = {"$set": {f"messages.$.{key}": value for key, value in stored.items()}}
        query = {"_id": participant_id, "pending.jobId": job_id, "messages.jobId": job_id}
    else:
        update = {"$push": {"messages": stored}}
        query = {"_id": participant_id, "pending.jobId": job_id}
    settled = sessions(db).update_one(query, {**update, "$unset": {"pending": ""}})
    return settled.modified_count == 1


def with_turn_settled(
    session: Mapping[str, Any], job_id: str, turn: Mapping[str, Any]
) -> dict[str, Any]:
    """`session` as settle_turn leaves it in MongoDB, without reading it back."""
    stored = as_dates(dict(turn))
    if "error" in stored:
        messages = [
            {**message, **stored} if message.get("jobId") == job_id else message
            for message in session["messages"]
        ]
    else:
        messages = [*session["messages"], stored]
    settled = {key: value for key, value in session.items() if key != "pending"}
    return {**settled, "messages": messages}


def note_delivery(db: Database, participant_id: str, job_id: str, delivered_at: Any) -> None:
    """Record when the participant's client first got the answer of `job_id` (once)."""
    answer = {"jobId": job_id, "role": "assistant", "deliveredAt": None}
    sessions(db).update_one(
        {"_id": participant_id, "messages": {"$elemMatch": answer}},
        {
            "$set": {
                "messages.$.deliveredAt": as_dates({"deliveredAt": delivered_at})["deliveredAt"]
            }
        },
    )


def mark_saved(db: Database, participant_id: str, saved_at: datetime) -> None:
    """Close the session: its token admits no more turns."""
    sessions(db).update_one({"_id": participant_id}, {"$set": {"savedAt": saved_at}})
