"""Putting jobs back on the queue when the worker running them died or is shutting down.

RQ notices abandoned jobs only during maintenance (every 10 minutes) and then marks
them failed. Here every worker checks every few seconds: a started job whose
heartbeat expired, or a job stuck between queue and registry, is claimed by exactly
one worker (the one whose ZREM/LREM removed it) and put back at the front of its
queue, so a participant still gets the answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from redis import Redis
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import as_text, parse_composite_key

from studychat.chat.outcomes import ENDED_STATUSES

logger = logging.getLogger(__name__)

# A job that brings its worker down this many times is failed, not retried forever.
MAX_RECOVERIES = 3
# Seconds a job may sit between queue and started registry before it counts as lost.
STUCK_AFTER_S = 10


def utcnow() -> datetime:
    """The current time in UTC, as RQ stores it."""
    return datetime.now(UTC)


def requeue_abandoned(queues: Iterable[Queue], connection: Redis) -> list[str]:
    """Requeue every job of `queues` whose worker died; return their ids."""
    requeued: list[str] = []
    for queue in queues:
        requeued += _requeue_expired_executions(queue, connection)
        requeued += _requeue_stuck_in_intermediate(queue, connection)
    return requeued


def _requeue_expired_executions(queue: Queue, connection: Redis) -> list[str]:
    key = queue.started_job_registry.key
    requeued = []
    expired: list[bytes] = connection.zrangebyscore(key, 0, time.time())  # type: ignore[assignment]
    for composite in expired:
        # Only the worker whose ZREM removes the entry requeues it.
        if connection.zrem(key, composite) != 1:
            continue
        job_id, _ = parse_composite_key(as_text(composite))
        if _requeue(queue, job_id, "its worker stopped sending heartbeats"):
            requeued.append(job_id)
    return requeued


def _requeue_stuck_in_intermediate(queue: Queue, connection: Redis) -> list[str]:
    intermediate = queue.intermediate_queue
    requeued = []
    for job_id in intermediate.get_job_ids():
        if intermediate.set_first_seen(job_id):
            continue
        first_seen = intermediate.get_first_seen(job_id)
        if first_seen is None or (utcnow() - first_seen).total_seconds() < STUCK_AFTER_S:
            continue
        if connection.lrem(intermediate.key, 1, job_id) != 1:
            continue
        if _requeue(queue, job_id, "its worker died before starting it"):
            requeued.append(job_id)
    return requeued


def _requeue(queue: Queue, job_id: str, reason: str) -> bool:
    """Put a claimed job back at the front of its queue, or fail it after MAX_RECOVERIES."""
    job = queue.fetch_job(job_id)
    if job is None or job.get_status(refresh=False) in ENDED_STATUSES:
        return False
    recoveries = int(job.meta.get("recoveries", 0)) + 1
    job.meta["recoveries"] = recoveries
    job.save_meta()
    if recoveries > MAX_RECOVERIES:
        _fail(queue, job, f"Gave up after the job was abandoned {MAX_RECOVERIES} times.")
        return False
    logger.warning("requeueing job %s: %s (recovery %d)", job_id, reason, recoveries)
    queue.enqueue_job(job, at_front=True)
    return True


def _fail(queue: Queue, job: Job, message: str) -> None:
    logger.error("job %s failed: %s", job.id, message)
    with queue.connection.pipeline() as pipeline:
        job.set_status(JobStatus.FAILED, pipeline=pipeline)
        registry = queue.failed_job_registry
        registry.add(job, ttl=job.failure_ttl, exc_string=message, pipeline=pipeline)
        pipeline.execute()


def hand_back(job: Job, queue: Queue, execution: Execution | None) -> None:
    """Return a job this worker will not finish (shutdown) to the front of its queue."""
    with queue.connection.pipeline() as pipeline:
        if execution is not None:
            execution.delete(job=job, pipeline=pipeline)
        pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
        pipeline.execute()
    queue.enqueue_job(job, at_front=True)
    logger.info("job %s handed back to queue %s", job.id, queue.name)
