"""How long the worker, woken by a job on an empty queue, waits for others to take with it.

Below saturation the queue is empty whenever the worker looks, so each job used to be
taken alone: woken by BLMOVE, read by the take script, recorded as started in a
transaction of its own, three round trips and RQ's per-batch work for one job. Jobs
taken together share all of that (job_batches, the start's transaction). So while jobs
come fast enough that at least one more is expected within the window, the worker
waits the window after the first before it takes the rest: a linger, as Kafka's
producers have. It waits no longer than two more jobs are expected to take (at 200
jobs a second, 10 ms), since each job that waits adds to the answer's time. Slower than
one job a window, the wait would buy nothing and only delay answers, so the first job
is taken at once. Under saturation jobs already wait in the queue and the worker never
waits on it (docs/benchmark.md, twenty-second round).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# The span over which the rate of jobs coming in is counted.
RATE_SPAN_S = 1.0
# The jobs a wait is for: a take of three costs about what a take of one did.
COMPANY = 2


class TakeWindow:
    """The wait before a take: up to `window_s` while jobs come fast enough to share it."""

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        # (when, how many) of the takes within the last RATE_SPAN_S.
        self._takes: deque[tuple[float, int]] = deque()
        self._recent = 0

    def note_taken(self, count: int) -> None:
        """Count `count` jobs taken now towards the rate."""
        now = self._clock()
        if count:
            self._takes.append((now, count))
            self._recent += count
        # Forgotten here too: under saturation no wait is asked for, and takes go on.
        self._forget_before(now - RATE_SPAN_S)

    def wait_s(self) -> float:
        """How long to wait for more jobs after a first one came to an empty queue."""
        if not self.window_s:
            return 0.0
        self._forget_before(self._clock() - RATE_SPAN_S)
        per_s = self._recent / RATE_SPAN_S
        if per_s * self.window_s < 1:
            return 0.0
        return min(self.window_s, COMPANY / per_s)

    def _forget_before(self, moment: float) -> None:
        while self._takes and self._takes[0][0] < moment:
            self._recent -= self._takes.popleft()[1]
