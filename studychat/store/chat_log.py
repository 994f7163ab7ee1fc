"""The transcript of every chat job, shipped from Redis to MongoDB's `chat_log`.

A job adds its log entry to a Redis stream in the same transaction that stores its
answer, so the answer never waits on MongoDB and no entry is lost while MongoDB is
down. A shipper thread in each worker process reads the stream as a consumer
group, upserts entries by job id (so a retried write cannot duplicate them), and
acknowledges them only once MongoDB has them; entries a dead worker had claimed
are taken over after a short idle time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis
from pymongo import UpdateOne
from pymongo.database import Database
from pymongo.errors import PyMongoError
from rq.job import Job

from studychat import outage_watch
from studychat.chat.provenance import as_dates
from studychat.outage_watch import Backoff
from studychat.store.database import CHAT_LOG_COLLECTION
from studychat.store.held_answers import HOLD_S, Entry, HeldAnswers
from studychat.study.shipped_turns import Delivery, ShippedAnswer, record_batch

logger = logging.getLogger(__name__)

STREAM = "chat_log:pending"
GROUP = "chat_log_shippers"
# Entries read and written at once: about a second's worth (answers and their delivery
# notes) at the few hundred answers a second one worker gives, so that most of a job's
# entries merge into one upsert. With 200 a batch held a third of a second, and most
# answers' notes came in the next one (long poll of 1,000: 1.7 upserts per answer,
# against 1.4 with 1,000).
BATCH = 1000
# Entries another shipper claimed but did not acknowledge for this long are taken over.
CLAIM_IDLE_MS = 30_000
# How often a shipper looks for such entries.
CLAIM_EVERY_S = 5.0
# After a batch that was not full, wait this long before reading the next: the entries of
# many answers (and the delivery notes that follow them) then go in one write, which costs
# the worker and MongoDB far less per entry than a write per answer. Longer than a poll's
# interval, so that most answers and their delivery notes (one poll later) merge into one
# upsert; an answer whose note is not there yet waits for it (held_answers.HOLD_S). They
# are safe in the stream meanwhile; a transcript reaches MongoDB at most this much, and
# its wait, later.
SHIP_PAUSE_S = 1.0


def entry_for(job: Job, status: str, answer: dict | None, **details: Any) -> dict[str, Any]:
    """The log document of one finished or failed chat job (`details`: its timing and more).

    The answer is stored under `response`, the name `/check_response` gives it.
    """
    return {
        "_id": job.id,
        "participantId": job.kwargs.get("participant_id"),
        "messages": job.kwargs.get("messages"),
        "status": status,
        "response": answer,
        **details,
    }


def delivery_entry(job_id: str, delivered_at: str) -> dict[str, Any]:
    """The log entry saying when the participant's client first got the whole answer."""
    return {"_id": job_id, "deliveredAt": delivered_at, "patch": True}


def _report(error: Exception) -> None:
    """An outage is said once by the server's Outage; anything else is logged in full."""
    if isinstance(error, redis.RedisError):
        outage_watch.REDIS.failed(error, "shipping transcripts")
    elif isinstance(error, PyMongoError):
        outage_watch.MONGODB.failed(error, "shipping transcripts")
    else:
        logger.exception("chat log shipping failed; will retry")


def add_entry(pipeline: redis.client.Pipeline, entry: dict[str, Any]) -> None:
    """Queue `entry` for MongoDB on `pipeline` (executed with the job's answer)."""
    pipeline.xadd(STREAM, {"doc": json.dumps(entry, default=str)})


def entries_waiting(connection: redis.Redis) -> int:
    """How many entries wait in Redis for MongoDB (a shipper deletes each it has shipped)."""
    return int(connection.xlen(STREAM))


def to_document(raw: bytes | str) -> dict[str, Any]:
    """A stream entry as the MongoDB document, with its times as datetimes."""
    document = as_dates(json.loads(raw))
    if isinstance(document.get("turn"), dict):
        document["turn"] = as_dates(document["turn"])
    return document


def _fields_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key not in ("_id", "patch")}


def upserts_of(documents: list[dict[str, Any]]) -> list[UpdateOne]:
    """One $set upsert per job: its entries of a batch merged, later fields over earlier.

    $set, not a replacement: a job's entry and the later note of its delivery merge in
    whatever order they arrive, and a retried write changes nothing.
    """
    merged: dict[str, dict[str, Any]] = {}
    for doc in documents:
        merged.setdefault(doc["_id"], {}).update(_fields_of(doc))
    return [
        UpdateOne({"_id": job_id}, {"$set": fields}, upsert=True)
        for job_id, fields in merged.items()
    ]


def session_parts(
    documents: list[dict[str, Any]], sessions_of: dict[str, str]
) -> tuple[list[ShippedAnswer], dict[str, Delivery]]:
    """A batch's session turns that ended, and its delivery notes of session answers.

    `sessions_of` names the session of each delivery note (legacy turns have none).
    """
    answers = [
        ShippedAnswer(doc["participantId"], doc["_id"], doc["turn"])
        for doc in documents
        if doc.get("turn") is not None
    ]
    deliveries = {
        doc["_id"]: Delivery(sessions_of[doc["_id"]], doc["deliveredAt"])
        for doc in documents
        if doc.get("patch") and doc["_id"] in sessions_of
    }
    return answers, deliveries


class ChatLogShipper(threading.Thread):
    """Moves log entries from the Redis stream into MongoDB, at least once, idempotently."""

    def __init__(
        self,
        connection: redis.Redis,
        db: Database,
        consumer: str,
        claim_idle_ms: int = CLAIM_IDLE_MS,
        hold_s: float = HOLD_S,
    ) -> None:
        super().__init__(name="chat-log-shipper", daemon=True)
        self.held = HeldAnswers(hold_s)
        self.last_read = 0
        self.connection = connection
        self.claim_idle_ms = claim_idle_ms
        self.db = db
        self.collection = db[CHAT_LOG_COLLECTION]
        self.consumer = consumer
        self.stopping = threading.Event()
        self._last_claim = -CLAIM_EVERY_S

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current batch."""
        self.stopping.set()
        self.join(timeout)

    def run(self) -> None:
        """Ship until stopped, backing off while Redis or MongoDB is unavailable."""
        group_ready = False
        backoff = Backoff(first=1.0, cap=30.0)
        while not self.stopping.is_set():
            try:
                # Created once, and again after an error (a Redis that lost its data).
                group_ready = group_ready or self._ensure_group()
                shipped = self.ship_once(block_ms=1000)
                if shipped:
                    outage_watch.MONGODB.succeeded()
                outage_watch.REDIS.succeeded()
                backoff.reset()
                # A backlog goes on at once; a part batch, or answers held back, wait.
                if self.last_read and shipped < BATCH:
                    self.stopping.wait(SHIP_PAUSE_S)
            except Exception as error:
                group_ready = False
                _report(error)
                self.stopping.wait(backoff.next_delay())

    def _ensure_group(self) -> bool:
        try:
            self.connection.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        return True

    def ship_once(self, block_ms: int | None = None) -> int:
        """Ship one batch: this consumer's unacknowledged entries, stale ones, then new ones.

        Answers whose delivery note is not in the batch are held back (held_answers):
        read again with the entries that follow. Returns how many entries it shipped
        (`last_read`: how many it read).
        """
        entries = self._read("0")
        if not entries:
            self.held.forget()
            entries = self._claim_stale_now_and_then()
        if not entries or self.held.holds_all(entries):
            entries = entries + self._read(">", block_ms)
        batch = [(entry_id, fields, to_document(fields[b"doc"])) for entry_id, fields in entries]
        self.last_read = len(batch)
        ready = self.held.ready(batch)
        if ready:
            self._write(ready)
        return len(ready)

    def _read(self, start: str, block_ms: int | None = None) -> list[tuple[bytes, dict]]:
        answer: Any = self.connection.xreadgroup(
            GROUP, self.consumer, {STREAM: start}, count=BATCH, block=block_ms
        )
        return [entry for entry in (answer[0][1] if answer else []) if entry[1]]

    def _claim_stale_now_and_then(self) -> list[tuple[bytes, dict]]:
        """Stale entries of dead shippers, looked for at most every few seconds."""
        if time.monotonic() - self._last_claim < CLAIM_EVERY_S:
            return []
        self._last_claim = time.monotonic()
        return self._claim_stale()

    def _claim_stale(self) -> list[tuple[bytes, dict]]:
        claimed = self.connection.xautoclaim(
            STREAM, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, count=BATCH
        )
        return [entry for entry in claimed[1] if entry[1]]

    def _write(self, batch: list[Entry]) -> None:
        documents = [document for _, _, document in batch]
        sessions_of = {
            document["_id"]: fields[b"participant"].decode()
            for _, fields, document in batch
            if b"participant" in fields
        }
        upserts = upserts_of(documents)
        self.collection.bulk_write(upserts, ordered=False)
        answers, deliveries = session_parts(documents, sessions_of)
        if answers or deliveries:
            record_batch(self.db, answers, deliveries)
        ids = [entry_id for entry_id, _, _ in batch]
        with self.connection.pipeline() as pipeline:
            pipeline.xack(STREAM, GROUP, *ids)
            pipeline.xdel(STREAM, *ids)
            pipeline.execute()
        logger.debug("shipped %d chat log entries in %d upserts", len(ids), len(upserts))
