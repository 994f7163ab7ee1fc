"""Erasing one participant on request: every trace in MongoDB and Redis, then an audit entry.

What goes: the record (`data`), the session (`sessions`), the transcript entries
(`chat_log`), and in Redis the participant's jobs (queued, running or finished, with
their messages), their outcomes and streamed deltas, their entries still waiting in
the transcript stream, their budget counters and holds, and their rate-limit windows.
Redis goes first, so that nothing still queued can write a transcript back afterwards.
Erasing twice does no harm. The audit entry (`erasures`) says who asked, when and how
many items went; it holds no content, and the participant only as a sha256 hash, so a
later question "was this id erased?" can still be answered.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.results import Result

from studychat.chat import budgets
from studychat.chat.answer_stream import deltas_key
from studychat.chat.outcomes import outcome_key
from studychat.chat.task_queue import SERIALIZER, make_queue
from studychat.store.chat_log import GROUP, STREAM
from studychat.store.database import (
    CHAT_LOG_COLLECTION,
    DATA_COLLECTION,
    ERASURES_COLLECTION,
    SESSIONS_COLLECTION,
)
from studychat.study.sessions import token_key
from studychat.web.rate_limits import KEY_PREFIX

logger = logging.getLogger(__name__)


def erase_participant(
    db: Database, connection: Redis, participant_id: str, requested_by: str
) -> dict[str, int]:
    """Remove everything of `participant_id`; how many items went, by kind."""
    session = db[SESSIONS_COLLECTION].find_one({"_id": participant_id})
    logged = db[CHAT_LOG_COLLECTION].find({"participantId": participant_id}, {"_id": 1})
    job_ids = {entry["_id"] for entry in logged} | session_job_ids(session)
    job_ids |= queued_job_ids(connection, participant_id)
    budget_keys = [participant_id] + ([token_key(session["token"])] if session else [])
    removed = {"redis": forget_in_redis(connection, participant_id, job_ids, budget_keys)}
    removed["records"] = db[DATA_COLLECTION].delete_one({"_id": participant_id}).deleted_count
    removed["sessions"] = db[SESSIONS_COLLECTION].delete_one({"_id": participant_id}).deleted_count
    transcripts = db[CHAT_LOG_COLLECTION].delete_many({"participantId": participant_id})
    removed["transcripts"] = transcripts.deleted_count
    db[ERASURES_COLLECTION].insert_one(audit_entry(participant_id, requested_by, removed))
    logger.info("erased a participant on request of %s: %s", requested_by, removed)
    return removed


def audit_entry(participant_id: str, requested_by: str, removed: dict[str, int]) -> dict:
    """Who asked, when, how many items went; the participant as a hash only."""
    return {
        "participantSha256": hashlib.sha256(participant_id.encode()).hexdigest(),
        "requestedBy": requested_by,
        "at": datetime.now(UTC),
        "removed": removed,
    }


def session_job_ids(session: dict[str, Any] | None) -> set[str]:
    """The jobs of a session's turns, the pending one included."""
    if not session:
        return set()
    ids = {m["jobId"] for m in session.get("messages", []) if m.get("jobId")}
    pending = session.get("pending") or {}
    return ids | ({pending["jobId"]} if pending.get("jobId") else set())


def queued_job_ids(connection: Redis, participant_id: str) -> set[str]:
    """The participant's jobs still waiting or running (not yet in any transcript)."""
    queue = make_queue(connection)
    candidates = queue.get_job_ids() + queue.started_job_registry.get_job_ids()
    jobs = Job.fetch_many(candidates, connection=connection, serializer=SERIALIZER)
    return {job.id for job in jobs if job and job.kwargs.get("participant_id") == participant_id}


def forget_in_redis(
    connection: Redis, participant_id: str, job_ids: Iterable[str], budget_keys: list[str]
) -> int:
    """Delete the participant's jobs, outcomes, deltas, stream entries, budgets and limits."""
    job_ids = sorted(job_ids)
    removed = drop_stream_entries(connection, participant_id, set(job_ids))
    for job_id in job_ids:
        removed += delete_job(connection, job_id)
    keys = [key for job_id in job_ids for key in job_keys(job_id)]
    removed += int(connection.delete(*keys)) if keys else 0
    removed += budgets.forget(connection, budget_keys, job_ids)
    return removed + drop_rate_limit_windows(connection, budget_keys)


def job_keys(job_id: str) -> list[str]:
    """The keys the service keeps per job: its outcome and its stream of deltas."""
    return [outcome_key(job_id), deltas_key(job_id)]


def delete_job(connection: Redis, job_id: str) -> int:
    """Delete an RQ job (its hash holds the messages), its results, queue and registry entries."""
    try:
        job = Job.fetch(job_id, connection=connection, serializer=SERIALIZER)
    except NoSuchJobError:
        return 0
    Result.delete_all(job)  # RQ keeps job results apart from the job (rq:results:<id>)
    job.delete(remove_from_queue=True)
    return 1


def drop_stream_entries(connection: Redis, participant_id: str, job_ids: set[str]) -> int:
    """Delete the participant's entries still waiting in the transcript stream."""
    entries: Any = connection.xrange(STREAM)
    ids = [entry_id for entry_id, fields in entries if _is_theirs(fields, participant_id, job_ids)]
    if not ids:
        return 0
    connection.xack(STREAM, GROUP, *ids)
    return int(connection.xdel(STREAM, *ids))


def _is_theirs(fields: dict[bytes, bytes], participant_id: str, job_ids: set[str]) -> bool:
    doc = json.loads(fields.get(b"doc", b"{}"))
    return doc.get("participantId") == participant_id or doc.get("_id") in job_ids


def drop_rate_limit_windows(connection: Redis, client_keys: list[str]) -> int:
    """Delete the rate limiter's windows of the participant and of their session."""
    names = [f"participant:{client_keys[0]}", *client_keys[1:]]
    removed = 0
    for name in names:
        pattern = f"LIMITS:*{KEY_PREFIX}/{_glob_escape(name)}/*"
        keys = list(connection.scan_iter(match=pattern, count=1000))
        removed += int(connection.delete(*keys)) if keys else 0
    return removed


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)
