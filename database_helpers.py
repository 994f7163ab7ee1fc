"""MongoDB helpers for scripts of research teams, kept at their old import path.

They live in studychat.store.database.
"""

from studychat.store.database import (
    CHAT_LOG_COLLECTION,
    DATA_COLLECTION,
    has_participated,
    make_mongo_client,
    save_participant_record,
)

__all__ = [
    "CHAT_LOG_COLLECTION",
    "DATA_COLLECTION",
    "has_participated",
    "make_mongo_client",
    "save_participant_record",
]
