"""A worker process's job metrics, summed in memory and written to Redis once a second.

Written with each answer, a job's counters (job_metrics.increments_of) are ten Redis
commands per job, a sixth of all an answer sends; summed in the process, all the jobs of
a second cost one transaction of about a dozen (eleventh round of docs/benchmark.md).
Only these counters wait, at most WRITE_EVERY_S: the answer, its transcript entry and
its budget are still written together when it ends.

A worker stopped by SIGTERM (a deploy) writes its sums before it exits; one killed
outright loses the counts of its last second, as any process's in-memory metrics would.
While Redis is unreachable the sums are kept, and written once it is back.

RQ's stock worker runs each job in a process of its own, which has no second to wait:
its jobs write their counters with their answers (jobs._finish), as before.
"""

from __future__ import annotations

import logging
import threading

from redis import Redis

from studychat import outage_watch
from studychat.chat.job_metrics import (
    Increments,
    JobSample,
    add_increments,
    increments_of,
    merge_into,
)
from studychat.outage_watch import REDIS_UNAVAILABLE

logger = logging.getLogger(__name__)

WRITE_EVERY_S = 1.0


class MetricsTally:
    """The counts of this process's jobs not yet written to Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Increments = {}

    def add(self, sample: JobSample, now: float | None = None) -> None:
        """Count a job that ended (its answer already stored)."""
        counts = increments_of(sample, now)
        with self._lock:
            merge_into(self._pending, counts)

    def write(self, connection: Redis) -> int:
        """Add the sums so far to Redis in one transaction; how many counters it touched.

        When the write fails the sums are kept for the next one, and the error is raised.
        """
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with connection.pipeline(transaction=True) as pipeline:
                add_increments(pipeline, pending)
                pipeline.execute()
        except Exception:
            with self._lock:
                merge_into(self._pending, pending)
            raise
        return len(pending)


class TallyWriter(threading.Thread):
    """Writes a MetricsTally to Redis every `every_s` seconds, and once more when stopped."""

    def __init__(
        self, tally: MetricsTally, connection: Redis, every_s: float = WRITE_EVERY_S
    ) -> None:
        super().__init__(name="metrics-writer", daemon=True)
        self.tally = tally
        self.connection = connection
        self.every_s = every_s
        self._stopping = threading.Event()

    def run(self) -> None:
        """Write until stopped."""
        while not self._stopping.wait(self.every_s):
            self.write_now()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop writing on schedule, then write what the last jobs added."""
        self._stopping.set()
        self.join(timeout)
        self.write_now()

    def write_now(self) -> None:
        """Write the sums; a failure is reported and the sums wait for the next write."""
        try:
            written = self.tally.write(self.connection)
        except REDIS_UNAVAILABLE as error:
            outage_watch.REDIS.failed(error, "writing job metrics")
        except Exception:
            logger.exception("writing job metrics failed; will retry")
        else:
            if written:  # with nothing to write, Redis was not asked: no news of it
                outage_watch.REDIS.succeeded()
