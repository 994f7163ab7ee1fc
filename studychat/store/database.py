"""MongoDB access: the client, the collections and the participant records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

# One document per participant, keyed by participantId.
DATA_COLLECTION = "data"
# One document per chat job, keyed by job id (see chat_log.py).
CHAT_LOG_COLLECTION = "chat_log"
# One document per participant session of a study, keyed by participantId (study/sessions.py).
SESSIONS_COLLECTION = "sessions"
# One counter per study and set of weights (study/assignment.py).
ASSIGNMENTS_COLLECTION = "assignments"
# One audit entry per erasure of a participant, without content (store/erasure.py).
ERASURES_COLLECTION = "erasures"


def make_mongo_client(url: str) -> MongoClient:
    """A MongoClient that gives up within seconds when the server is unreachable."""
    return MongoClient(
        url,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=3000,
        socketTimeoutMS=10000,
        tz_aware=True,
        appname="study-chat-proxy",
    )


def save_participant_record(
    db: Database, participant_id: str, messages: list, tasks: dict, condition: Any
) -> bool:
    """Store a participant's record once; False when one exists (it is never overwritten)."""
    record = {
        "_id": participant_id,
        "messages": messages,
        "tasks": tasks,
        "condition": condition,
        "savedAt": datetime.now(UTC),
    }
    try:
        db[DATA_COLLECTION].insert_one(record)
    except DuplicateKeyError:
        return False
    return True


def save_session_record(
    db: Database, session: dict[str, Any], fields: dict[str, Any], saved_at: datetime
) -> bool:
    """Store a session participant's record once; False when one exists (it is kept).

    The server writes what it holds (study, condition, Prolific's ids, the conversation
    with its times); `fields` are what the client sent (`tasks` and the rest), as sent.
    """
    record = {
        **fields,
        "_id": session["_id"],
        "study": session["study"],
        "studyHash": session["studyHash"],
        "condition": session["condition"],
        "prolific": session["prolific"],
        "messages": session["messages"],
        "savedAt": saved_at,
    }
    try:
        db[DATA_COLLECTION].insert_one(record)
    except DuplicateKeyError:
        return False
    return True


def has_participated(db: Database, participant_id: str) -> bool:
    """Whether a record exists for this participant."""
    return db[DATA_COLLECTION].count_documents({"_id": participant_id}, limit=1) > 0
