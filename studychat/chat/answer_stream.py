"""The deltas of an answer as the model writes them, and the signal that a job ended.

The worker appends each delta of text to a Redis stream per job, then an end marker in
the same transaction that stores the answer; a job not streamed has no such stream. The
web relays the stream as server-sent events (web/routes/stream.py); a late joiner reads
it from the start. Each write also publishes the job's id on the channel of the web
process that queued it (updates_channel), so that waiting readers look again at once
instead of every 0.2 s (web/job_updates.py).

Readers make short non-blocking reads rather than blocking ones: a blocked read would
hold one Redis connection per open stream, and hosted Redis plans allow only a few
dozen clients.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.job import Job

from studychat.chat.provenance import utc_iso

DELTAS_PREFIX = "chat:deltas:"
# The channel that carries the id of a job whenever its deltas or its outcome are written,
# for a job that names no channel of its own; a web process's own channels are this
# name, a colon and a suffix of its own (web/job_updates.py), and ALL_UPDATES covers all.
UPDATES_CHANNEL = "chat:updates"
ALL_UPDATES = UPDATES_CHANNEL + "*"
# The key of the job's meta that names the channel its updates go to (enqueue_chat).
UPDATES_META = "updates_channel"
# Deltas are kept long enough to replay to a participant who reconnects; after that the
# whole answer is still in the job's outcome.
DELTAS_TTL_S = 3600
# Deltas are coalesced for this long before being published: fewer round trips, and
# still far below what a reader notices.
FLUSH_EVERY_S = 0.05
# How often a waiting reader looks again while it cannot rely on UPDATES_CHANNEL.
POLL_EVERY_S = 0.2
DELTA = b"d"
END = b"end"


def updates_channel(job: Job) -> str:
    """The channel that announces the job's writes: that of the web process that queued it."""
    channel = job.meta.get(UPDATES_META)
    if isinstance(channel, str) and channel.startswith(UPDATES_CHANNEL + ":"):
        return channel
    return UPDATES_CHANNEL


def deltas_key(job_id: str) -> str:
    """The Redis stream holding a job's deltas."""
    return DELTAS_PREFIX + job_id


class DeltaPublisher:
    """Publishes a job's deltas of text, coalesced, as the model streams them."""

    def __init__(self, connection: Redis, job_id: str, channel: str = UPDATES_CHANNEL) -> None:
        self.connection = connection
        self.job_id = job_id
        self.channel = channel
        self.key = deltas_key(job_id)
        self.buffer: list[str] = []
        self.last_flush = time.monotonic()
        # When the first delta arrived (UTC ISO 8601), for the turn's timing.
        self.first_at: str | None = None

    def add(self, text: str) -> None:
        """Take one delta; publish what has gathered when it is time."""
        self.first_at = self.first_at or utc_iso()
        self.buffer.append(text)
        if time.monotonic() - self.last_flush >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Publish what has gathered."""
        if not self.buffer:
            return
        with self.connection.pipeline(transaction=False) as pipeline:
            pipeline.xadd(self.key, {DELTA: "".join(self.buffer)})
            pipeline.expire(self.key, DELTAS_TTL_S)
            pipeline.publish(self.channel, self.job_id)
            pipeline.execute()
        self.buffer.clear()
        self.last_flush = time.monotonic()


def mark_ended(
    pipeline: Pipeline, job_id: str, streamed: bool, channel: str = UPDATES_CHANNEL
) -> None:
    """Signal, on `pipeline` and `channel`, that the job's outcome is stored.

    A streamed job's deltas end with an end marker. A job not streamed gets no stream of
    deltas at all (a one-entry stream takes Redis about 4.7 kB for DELTAS_TTL_S): its
    readers learn from its outcome that it is over (web/routes/stream.py, look).
    """
    if streamed:
        pipeline.xadd(deltas_key(job_id), {END: "1"})
        pipeline.expire(deltas_key(job_id), DELTAS_TTL_S)
    pipeline.publish(channel, job_id)


def read_deltas(connection: Redis, job_id: str, after: str) -> list[tuple[str, str | None]]:
    """The entries after id `after`, without waiting: each (entry id, text).

    The text is None for the end marker.
    """
    return deltas_in(connection.xread({deltas_key(job_id): after}, count=500))


def queue_deltas_read(pipe: Pipeline, job_id: str, after: str) -> None:
    """Queue read_deltas's read on `pipe`; its answer goes to deltas_in."""
    pipe.xread({deltas_key(job_id): after}, count=500)


def deltas_in(answer: Any) -> list[tuple[str, str | None]]:
    """The entries in an XREAD's answer: each (entry id, text)."""
    entries = answer[0][1] if answer else []
    return [(entry_id.decode(), _text(fields)) for entry_id, fields in entries]


def _text(fields: dict[bytes, bytes]) -> str | None:
    text = fields.get(DELTA)
    return text.decode() if text is not None else None
