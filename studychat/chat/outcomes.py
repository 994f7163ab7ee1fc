"""Where a chat job leaves its answer, and how the web reads it in one round trip.

The worker stores the exact HTTP body `/check_response` sends (the upstream's JSON
spliced in untouched) with the status code, so answering costs no parsing at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.job import Job, JobStatus

from studychat.chat.provenance import DELIVERED, utc_iso
from studychat.redis_scripts import run_script
from studychat.store.chat_log import STREAM, delivery_entry

OUTCOME_PREFIX = "chat:outcome:"
# The first delivery of an outcome stamps it and sends the time to the transcript stream,
# with the participant of a session's turn (whose conversation records it too).
_MARK_DELIVERED_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], 'deliveredAt', ARGV[1]) == 1 then
  local participant = redis.call('HGET', KEYS[1], 'participant')
  if participant then
    redis.call('XADD', KEYS[2], '*', 'doc', ARGV[2], 'participant', participant)
  else
    redis.call('XADD', KEYS[2], '*', 'doc', ARGV[2])
  end
end
return 1
"""
# A poll's look at a job: its outcome and RQ status, and, when the outcome is there and
# released (KEYS[1]'s release time is not after ARGV[1]), its first delivery marked as
# _MARK_DELIVERED_LUA marks it: the poll that hands it over needs no second round trip.
_TAKE_STATE_LUA = """
local state = redis.call('HMGET', KEYS[1], 'code', 'body', 'release', 'deliveredAt', 'participant')
local status = redis.call('HGET', KEYS[2], 'status')
if state[2] and not state[4] and tonumber(state[3] or '0') <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'deliveredAt', ARGV[2])
  if state[5] then
    redis.call('XADD', KEYS[3], '*', 'doc', ARGV[3], 'participant', state[5])
  else
    redis.call('XADD', KEYS[3], '*', 'doc', ARGV[3])
  end
  state[4] = ARGV[2]
end
return {state[1], state[2], state[3], state[4], status}
"""
# RQ statuses of a job that ended without storing an outcome, and of any job that ended.
FAILED_STATUSES = frozenset({JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
ENDED_STATUSES = FAILED_STATUSES | {JobStatus.FINISHED}


@dataclass(frozen=True)
class JobState:
    """What the web knows of a job: its stored outcome, or else its RQ status."""

    status_code: int | None
    body: bytes | None
    rq_status: str | None
    # Unix time before which a session's answer is held back (min_reply_seconds).
    release_at: float = 0.0
    # Whether a participant's client has been handed the outcome already.
    delivered: bool = False

    @property
    def over(self) -> bool:
        """Whether nothing more will happen: answered, failed, or unknown (expired)."""
        return self.body is not None or self.rq_status in FAILED_STATUSES | {None}

    @property
    def released(self) -> bool:
        """Whether the outcome may be shown now (always, unless a condition paces it)."""
        return self.held_for <= 0

    @property
    def held_for(self) -> float:
        """Seconds until the outcome may be shown."""
        return self.release_at - time.time()


def outcome_key(job_id: str) -> str:
    """The Redis key of a job's outcome."""
    return OUTCOME_PREFIX + job_id


def success_body(raw_completion_json: str) -> str:
    """The `/check_response` body for an answer: the upstream object, byte for byte."""
    return '{"response": ' + raw_completion_json + "}"


def store_outcome(
    pipeline: Pipeline,
    job_id: str,
    status_code: int,
    body: str,
    ttl: int,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Record a job's final answer (200) or failure (502) for `ttl` seconds, on `pipeline`.

    The first outcome stored stays: a job run a second time by recovery (its first run's
    answer was stored late, during a Redis outage) never replaces what a participant may
    already have been shown. `extra` holds a session turn's fields (`turn`, `release`).
    """
    key = outcome_key(job_id)
    for field, value in {"code": str(status_code), "body": body, **(extra or {})}.items():
        pipeline.hsetnx(key, field, value)
    pipeline.expire(key, ttl)


def has_outcome(connection: Redis, job_id: str) -> bool:
    """Whether the job has already stored its final answer."""
    return bool(connection.exists(outcome_key(job_id)))


class _SeenAtStart(threading.local):
    """What the worker saw, on this thread, of the outcome of the job it is running."""

    job_id: str | None = None
    stored: bool = False


_seen_at_start = _SeenAtStart()


@contextmanager
def seen_at_start(job_id: str, stored: bool) -> Iterator[None]:
    """Tell stored_before_run, on this thread, what the worker saw as it started `job_id`.

    The concurrent worker looks in the transaction that records its jobs as started,
    which saves every job a round trip of its own.
    """
    _seen_at_start.job_id, _seen_at_start.stored = job_id, stored
    try:
        yield
    finally:
        _seen_at_start.job_id = None


def stored_before_run(connection: Redis, job_id: str) -> bool:
    """Whether an earlier run of the job stored its outcome: as seen at start, else asked now."""
    if _seen_at_start.job_id == job_id:
        return _seen_at_start.stored
    return has_outcome(connection, job_id)


def read_state(connection: Redis, job_id: str) -> JobState:
    """The outcome and RQ status of a job, in a single round trip."""
    pipe = connection.pipeline(transaction=False)
    queue_state_read(pipe, job_id)
    return state_read(pipe.execute())


def queue_state_read(pipe: Pipeline, job_id: str) -> None:
    """Queue on `pipe` the two reads of a job's state (its answers: state_read)."""
    pipe.hmget(outcome_key(job_id), "code", "body", "release", DELIVERED)
    pipe.hget(Job.key_for(job_id), "status")


def state_read(answers: list[Any]) -> JobState:
    """The JobState in the answers of queue_state_read's two reads."""
    (code, body, release, delivered), status = answers
    return _state_of(code, body, release, delivered, status)


def take_state(connection: Redis, job_id: str) -> JobState:
    """The job's state, as read_state gives it, by a reader about to hand its outcome over.

    An outcome that is there and released is marked delivered in the same round trip
    (as mark_delivered marks it); a held-back one is left for mark_delivered after its wait.
    """
    now = utc_iso()
    keys = [outcome_key(job_id), Job.key_for(job_id), STREAM]
    args = [repr(time.time()), now, json.dumps(delivery_entry(job_id, now))]
    return _state_of(*run_script(connection, _TAKE_STATE_LUA, keys=keys, args=args))


def _state_of(
    code: bytes | None,
    body: bytes | None,
    release: bytes | None,
    delivered: bytes | None,
    status: bytes | None,
) -> JobState:
    """A JobState from the fields of the outcome's hash and the RQ job's status."""
    return JobState(
        status_code=int(code) if code is not None else None,
        body=body,
        rq_status=status.decode() if status is not None else None,
        release_at=float(release) if release is not None else 0.0,
        delivered=delivered is not None,
    )


def mark_delivered(connection: Redis, state: JobState, job_id: str) -> None:
    """Note when a participant's client first got the outcome, for the transcript (once)."""
    if state.delivered:
        return
    now = utc_iso()
    entry = json.dumps(delivery_entry(job_id, now))
    keys = [outcome_key(job_id), STREAM]
    run_script(connection, _MARK_DELIVERED_LUA, keys=keys, args=[now, entry])
