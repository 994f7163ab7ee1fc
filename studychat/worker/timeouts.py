"""Job timeouts for jobs that run on threads: one watchdog thread for all of them.

RQ's stock timeout is SIGALRM, which only the main thread receives; its
TimerDeathPenalty starts a timer thread per job. Here one watchdog keeps every
deadline in a heap and, when one passes, raises the job's timeout exception in the
thread running it. Like any asynchronous exception it lands between two Python
instructions: a call blocked in C (a socket read) ends first at its own timeout,
which LLM_TIMEOUT_S bounds.

Nearly every job ends before its deadline, and every job's timeout is the same length,
so two things are kept cheap at hundreds of jobs a second: arming wakes the watchdog
only when the new deadline is the earliest (otherwise it already wakes in time), and
the deadlines of finished jobs are dropped once they are most of the heap (they would
otherwise stay until they pass: with the default timeout, about ten minutes of jobs).
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import threading
import time

from rq.timeouts import BaseDeathPenalty

logger = logging.getLogger(__name__)

# Below this many deadlines held, finished jobs' ones are left to pass.
COMPACT_ABOVE = 1024


class Watchdog(threading.Thread):
    """Raises a timeout exception in a thread whose deadline passed."""

    def __init__(self) -> None:
        super().__init__(name="job-watchdog", daemon=True)
        self._deadlines: list[tuple[float, int, int, type[BaseException]]] = []
        self._armed: set[int] = set()
        self._tokens = itertools.count()
        self._changed = threading.Condition()
        self.wakeups = 0  # times the watchdog woke to look at its deadlines

    def arm(self, seconds: float, thread_id: int, exception: type[BaseException]) -> int:
        """Raise `exception` in `thread_id` after `seconds` unless disarmed; a token."""
        token = next(self._tokens)
        deadline = time.monotonic() + seconds
        with self._changed:
            heapq.heappush(self._deadlines, (deadline, token, thread_id, exception))
            self._armed.add(token)
            if self._deadlines[0][1] == token:
                self._changed.notify()  # earlier than the deadline the watchdog waits for
        return token

    def disarm(self, token: int) -> None:
        """Cancel the deadline `token`."""
        with self._changed:
            self._armed.discard(token)
            if len(self._deadlines) > max(COMPACT_ABOVE, 2 * len(self._armed)):
                self._drop_disarmed()

    def held(self) -> int:
        """How many deadlines the watchdog holds, cancelled ones not yet dropped included."""
        with self._changed:
            return len(self._deadlines)

    def _drop_disarmed(self) -> None:
        self._deadlines = [entry for entry in self._deadlines if entry[1] in self._armed]
        heapq.heapify(self._deadlines)

    def run(self) -> None:
        with self._changed:
            while True:
                self._fire_expired()
                wait = self._deadlines[0][0] - time.monotonic() if self._deadlines else None
                self._changed.wait(wait)
                self.wakeups += 1

    def _fire_expired(self) -> None:
        while self._deadlines and self._deadlines[0][0] <= time.monotonic():
            _, token, thread_id, exception = heapq.heappop(self._deadlines)
            if token in self._armed:
                self._armed.discard(token)
                logger.warning("job on thread %d exceeded its timeout", thread_id)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread_id), ctypes.py_object(exception)
                )


_watchdog: Watchdog | None = None
_start_lock = threading.Lock()


def watchdog() -> Watchdog:
    """The process's one watchdog, started on first use."""
    global _watchdog
    with _start_lock:
        if _watchdog is None:
            _watchdog = Watchdog()
            _watchdog.start()
    return _watchdog


class WatchdogDeathPenalty(BaseDeathPenalty):
    """RQ's death penalty interface on the shared watchdog."""

    def setup_death_penalty(self) -> None:
        self._token = None
        if self._timeout and self._timeout > 0:
            self._token = watchdog().arm(self._timeout, threading.get_ident(), self._exception)

    def cancel_death_penalty(self) -> None:
        if self._token is not None:
            watchdog().disarm(self._token)
