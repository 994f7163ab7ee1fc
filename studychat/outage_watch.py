"""Riding through an outage of Redis or MongoDB: said once when it starts, once when it ends.

Managed Redis restarts and fails over for maintenance, usually while a study runs. Each
loop of the worker (dequeue, heartbeat, transcript shipper, a job storing its answer)
reports its failures and successes to the process's one `Outage` of that server, which
logs the first failure and the first success after it, whichever thread sees them, and
waits between tries with a bounded exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

logger = logging.getLogger(__name__)

# Errors that mean "Redis cannot be used right now", not "this command is wrong": no
# connection, a timeout, a server still loading its data, a replica during failover.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
)


class Backoff:
    """Delays that double from `first` up to `cap` seconds, reset after a success."""

    def __init__(self, first: float = 0.25, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next_delay(self) -> float:
        """The delay to wait now; the following one doubles."""
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self._next = self.first


class Outage:
    """Whether a server is unavailable to this process, with one log line per change."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._lock = threading.Lock()
        self._since: float | None = None

    @property
    def ongoing(self) -> bool:
        """Whether the last attempt anywhere in this process failed."""
        return self._since is not None

    def failed(self, error: BaseException, doing: str) -> None:
        """Report a failed attempt; the first one of an outage is logged."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        logger.warning(
            "%s unavailable (%s while %s); waiting for it to come back",
            self.server,
            type(error).__name__,
            doing,
        )

    def succeeded(self) -> None:
        """Report a successful attempt; the first one after an outage is logged."""
        if self._since is None:  # the common case, without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            lasted = time.monotonic() - self._since
            self._since = None
        logger.warning("%s is back after %.1f s; carrying on", self.server, lasted)


def wait_for_redis(connection: redis.Redis, doing: str) -> None:
    """Return once Redis answers a PING, waiting with backoff while it does not."""
    backoff = Backoff()
    while True:
        try:
            connection.ping()
        except REDIS_UNAVAILABLE as error:
            REDIS.failed(error, doing)
            time.sleep(backoff.next_delay())
        else:
            REDIS.succeeded()
            return


# One of each per process: every thread reports to the same one.
REDIS = Outage("Redis")
MONGODB = Outage("MongoDB")
