"""RQ's record of each job's success, written for the jobs that end close together at once.

RQ writes a job's success (its status, result, registries, the worker's counters) in a
transaction of its own: about 14 commands and a round trip per job. Nobody waits on it
here: the participant's answer was stored by the job itself (jobs._finish), and the web
reads that. So a job's thread hands its success over and goes on to the next job, and
one thread writes the successes that came in within WINDOW_S in one transaction.

A worker that dies with successes not yet written loses nothing: their jobs are still
in the StartedJobRegistry, recovery runs them again, and a job that already stored its
answer only records its success then (see jobs.run_chat).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from redis import Redis
from redis.client import Pipeline

logger = logging.getLogger(__name__)

# How long a success may wait for others to share its transaction: short against the
# seconds a model takes, long enough at tens of answers a second to gather several.
WINDOW_S = 0.05
# Successes in one transaction at most, so that a burst never makes one huge transaction.
PER_TRANSACTION = 100

T = TypeVar("T")


class SuccessBatches(Generic[T]):
    """Collects successes from job threads and writes them in batches on a thread of its own.

    `write(pipeline, successes)` queues the commands of the successes that share one
    transaction; `on_error(error, count)` is told of a batch that could not be written.
    """

    def __init__(
        self,
        connection: Redis,
        write: Callable[[Pipeline, list[T]], None],
        on_error: Callable[[Exception, int], None],
        window_s: float = WINDOW_S,
    ) -> None:
        self.connection = connection
        self.window_s = window_s
        self._write_part = write
        self._on_error = on_error
        self._pending: list[T] = []
        self._arrived = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rq-successes", daemon=True)

    def start(self) -> None:
        """Begin writing batches."""
        self._thread.start()

    def add(self, success: T) -> None:
        """Hand over one job's success; it is written within about `window_s`."""
        with self._arrived:
            self._pending.append(success)
            self._arrived.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending, then end the thread."""
        self._stopping.set()
        with self._arrived:
            self._arrived.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            if not self._wait_for_first():
                return
            # Let the successes of the next moments join this one's transaction.
            self._stopping.wait(self.window_s)
            self._write(self._take_pending())

    def _wait_for_first(self) -> bool:
        """Wait until a success is pending; False once stopping with nothing pending."""
        with self._arrived:
            while not self._pending:
                if self._stopping.is_set():
                    return False
                self._arrived.wait()
        return True

    def _take_pending(self) -> list[T]:
        with self._arrived:
            batch, self._pending = self._pending, []
        return batch

    def _write(self, batch: list[T]) -> None:
        for start in range(0, len(batch), PER_TRANSACTION):
            part = batch[start : start + PER_TRANSACTION]
            try:
                with self.connection.pipeline() as pipeline:
                    self._write_part(pipeline, part)
                    pipeline.execute()
            except Exception as error:
                self._on_error(error, len(part))
