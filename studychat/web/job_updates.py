"""Wakes the long polls and streams of a web process when the worker writes to their job.

A long poll (/check_response with "wait") used to look at its job's end marker, and an
open stream (GET /stream) at its job's deltas, every 0.2 s: five Redis commands a second
per waiting request, 9 % of the web's CPU in the benchmark's long-poll load
(docs/benchmark.md), and load on a Redis that some hosted plans bill per command. Now
the worker publishes a job's id whenever it writes deltas or the outcome, and each web
process holds one subscription, on a thread of its own: a waiting request looks once,
then sleeps until its job's next message or its deadline.

The worker publishes on the channel of the web process that queued the job (its
`channel`, carried in the job's meta: answer_stream.updates_channel), so that a process
hears of its own jobs only: hearing every answer of the service cost each process about
a tenth of its CPU. A process whose long polls and streams are mostly for jobs queued
elsewhere (a router that spreads requests) subscribes to every process's channel
instead, by pattern (returning_requests.py). A waiting request for a job it does not
hear of looks every 0.2 s, as when nobody listens.

A message can be lost only while the subscription is down. So a request relies on
messages only while the subscription is known to be up; otherwise it looks every
0.2 s, as before. Whenever the subscription is (re)established every waiting request is
woken to look again, which covers what was published while it was down. A connection
that hangs without closing is found too: a quiet subscription is pinged every 5 s and
made anew when it gives no sign of life for 15 s. What is stored in Redis stays the
truth; a message only says when to look.

A long poll mostly comes right after its chat, through the same connection and so the
same web process, before the model has answered. So the process notes each job it is
about to queue, and forgets it at the job's first message: a long poll for a job still
noted, with the subscription up since before the job was queued, has nothing to look
at yet and goes straight to sleep. That is one Redis round trip per answer less. Any
doubt (a job queued elsewhere, a message heard, the subscription lost since) means a
look first, as before.

A short poll (no "wait") of such a job, within UNHEARD_TRUSTED_S of its queueing, is
answered "processing" without a look at all (web/polls.py): at 0.5 s polling and 2 s
answers that is three or four polls per answer, each a script of three Redis commands,
that ask Redis nothing. Past that while a poll looks as before, so that an outcome
written without a message (a job cancelled with RQ's tools) is not hidden for longer
than a long poll's wait would hide it. Short polls start the subscription only where
they mostly come back to the process that queued their job (returning_requests.py); the
first long poll or stream starts it regardless.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from redis import Redis
from redis.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from studychat import outage_watch
from studychat.chat.answer_stream import ALL_UPDATES, POLL_EVERY_S, UPDATES_CHANNEL
from studychat.outage_watch import REDIS_UNAVAILABLE, Backoff
from studychat.web.returning_requests import (
    SAMPLE_POLLS,
    SAMPLE_WAITS,
    QueuedHere,
    ReturningShare,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long one read of the subscription waits for a message before looking again.
LISTEN_TIMEOUT_S = 1.0
# A quiet subscription is asked for a sign of life this often; one that gives none for
# SILENCE_LIMIT_S is taken for dead (a connection can hang without ever closing) and
# made anew, while waiting requests look for themselves.
PING_EVERY_S = 5.0
SILENCE_LIMIT_S = 15.0
ALIVE = "job-updates-alive"
# Jobs noted as queued here and not heard of since, at most; the oldest are forgotten
# first (a forgotten job is simply looked at first). Jobs are heard of within seconds.
UNHEARD_KEPT = 20_000
# How long after queueing a job unheard of is taken to have no outcome without a look.
# Every outcome the worker stores is announced; one that is not (an operator cancelling
# the job with RQ's tools, a job failed after its workers died over and over) shows
# within this much, as it does within a long poll's wait.
UNHEARD_TRUSTED_S = 10.0


class JobUpdates:
    """One web process's subscription to job updates, and the requests waiting on it."""

    def __init__(
        self,
        connection: Redis,
        ping_every_s: float = PING_EVERY_S,
        silence_limit_s: float = SILENCE_LIMIT_S,
        trusted_for_s: float = UNHEARD_TRUSTED_S,
        returning_polls: ReturningShare | None = None,
        returning_waits: ReturningShare | None = None,
    ) -> None:
        self.connection = connection
        self.ping_every_s = ping_every_s
        self.silence_limit_s = silence_limit_s
        self.trusted_for_s = trusted_for_s
        # Where the worker announces the jobs this process queues (enqueue_chat).
        self.channel = f"{UPDATES_CHANNEL}:{uuid.uuid4().hex}"
        self._returning_polls = returning_polls or ReturningShare(SAMPLE_POLLS)
        self._returning_waits = returning_waits or ReturningShare(SAMPLE_WAITS)
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._queued_here = QueuedHere()
        # Jobs queued here while listening and not heard of since, oldest first: when
        # each was noted (time.monotonic()).
        self._unheard: dict[str, float] = {}
        self._listening = False  # the jobs queued here are heard of
        self._hearing_all = False  # every job is heard of
        self._wants_all = False
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def started(self) -> bool:
        """Whether the subscription was started (it is then held, through outages, until closed)."""
        return self._thread is not None

    @property
    def listening(self) -> bool:
        """Whether the subscription is up, so that requests waiting on jobs queued here
        rely on its messages."""
        return self._listening

    @property
    def hearing_all(self) -> bool:
        """Whether the subscription is up and hears of every job, wherever it was queued."""
        return self._hearing_all

    def waiting(self) -> int:
        """How many requests are waiting now."""
        with self._lock:
            return sum(len(events) for events in self._waiting.values())

    def wait_for(self, job_id: str, seconds: float, look: Callable[[], T]) -> T:
        """Call `look` until it gives something, for up to `seconds`; what it gave last.

        It is called again when the worker has written to the job (or, while its messages
        are not heard here, every 0.2 s): `look` reads what the request waits for.
        """
        if seconds <= 0:
            return look()
        deadline = time.monotonic() + seconds
        with self.watching(job_id) as woken:
            if self._unheard_of(job_id):
                # Nothing written to it since it was queued: no look to make yet.
                self.sleep(job_id, woken, seconds)
            while True:
                woken.clear()  # before the look: what comes during it wakes the next sleep
                seen = look()
                remaining = deadline - time.monotonic()
                if seen or remaining <= 0:
                    return seen
                self.sleep(job_id, woken, remaining)

    def note_queued(self, job_id: str) -> None:
        """Note a job this process is about to queue (before it is queued: its first
        message may come at once), so that its long polls can skip their first look.
        """
        with self._lock:
            self._queued_here.add(job_id)
            if not self._listening:
                return
            self._unheard[job_id] = time.monotonic()
            if len(self._unheard) > UNHEARD_KEPT:
                del self._unheard[next(iter(self._unheard))]

    def _unheard_of(self, job_id: str) -> bool:
        """Whether the job was queued here, and not written to since, by all we heard."""
        with self._lock:
            return self._listening and job_id in self._unheard

    def surely_pending(self, job_id: str) -> bool:
        """Whether the job was queued here moments ago and nothing written to it since.

        Then it has no outcome to read: a poll can say "processing" without a look.
        Asked for every short poll, it starts the subscription once they mostly come
        back to this process (returning_requests.py).
        """
        with self._lock:
            noted = self._unheard.get(job_id) if self._listening else None
            worth_listening = (
                self._thread is None
                and self._returning_polls.count(job_id in self._queued_here) is True
            )
        if worth_listening:
            self._start_once()
        return noted is not None and time.monotonic() - noted < self.trusted_for_s

    def sleep(self, job_id: str, woken: threading.Event, seconds: float) -> None:
        """Sleep until `woken` is set or `seconds` pass; only 0.2 s while the job's
        messages are not heard here."""
        woken.wait(seconds if self._hears_of(job_id) else min(POLL_EVERY_S, seconds))

    def _hears_of(self, job_id: str) -> bool:
        """Whether a message about the job would be heard here now."""
        with self._lock:
            return self._hearing_all or (self._listening and job_id in self._queued_here)

    @contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever the worker writes to `job_id` while the block runs.

        Clear it before each look at Redis and sleep on it after: nothing written after
        the look began is missed.
        """
        self._start_once()
        woken = threading.Event()
        with self._lock:
            self._count_wait(job_id)
            self._waiting.setdefault(job_id, set()).add(woken)
        try:
            yield woken
        finally:
            with self._lock:
                events = self._waiting.get(job_id, set())
                events.discard(woken)
                if not events:
                    self._waiting.pop(job_id, None)

    def _count_wait(self, job_id: str) -> None:
        """Count a wait; once they are mostly for jobs queued elsewhere, ask to hear all."""
        if not self._wants_all:
            came_back = self._returning_waits.count(job_id in self._queued_here)
            self._wants_all = came_back is False

    def _start_once(self) -> None:
        """Start listening on first use, in the process that serves (after gunicorn forks)."""
        with self._lock:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._listen, name="job-updates", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        """Hold the subscription, riding through Redis outages, until closed."""
        backoff = Backoff()
        while not self._closed.is_set():
            pubsub = self.connection.pubsub()
            try:
                self._read_messages(pubsub, backoff)
            except Exception as error:
                if self._closed.is_set():
                    return  # the app's clients were closed under the read
                self._stop_relying(error)
                self._closed.wait(backoff.next_delay())
            finally:
                pubsub.close()

    def _read_messages(self, pubsub: PubSub, backoff: Backoff) -> None:
        asked_all = self._subscribe(pubsub)
        heard = pinged = time.monotonic()
        while not self._closed.is_set():
            message = pubsub.get_message(timeout=min(LISTEN_TIMEOUT_S, self.ping_every_s))
            now = time.monotonic()
            if message is not None:
                heard = now
                self._handle(message, pubsub, backoff)
            elif now - heard > self.silence_limit_s:
                raise RedisConnectionError("no sign of life on the job updates subscription")
            elif now - pinged >= self.ping_every_s:
                pubsub.ping(ALIVE)  # its pong is a message like any other
                pinged = now
            if self._wants_all and not asked_all:
                pubsub.psubscribe(ALL_UPDATES)
                asked_all = True

    def _subscribe(self, pubsub: PubSub) -> bool:
        """Subscribe to this process's jobs, or to all; whether to all."""
        if self._wants_all:
            pubsub.psubscribe(ALL_UPDATES)
            return True
        # The shared channel too: a worker of an older release announces every job there.
        pubsub.subscribe(self.channel, UPDATES_CHANNEL)
        return False

    def _handle(self, message: dict, pubsub: PubSub, backoff: Backoff) -> None:
        """A message of the subscription: (re)subscribed, or a job was written to."""
        kind = message["type"]
        if kind in ("message", "pmessage"):
            self._wake(message["data"].decode())
        elif kind == "subscribe" and message["channel"] == self.channel.encode():
            self._relying(backoff, hearing_all=False)
        elif kind == "psubscribe":
            self._relying(backoff, hearing_all=True)
            # The pattern covers them: each message is heard once (a channel not
            # subscribed to on this connection is simply not there to drop).
            pubsub.unsubscribe(self.channel, UPDATES_CHANNEL)

    def _relying(self, backoff: Backoff, hearing_all: bool) -> None:
        """Rely on the messages from now on; what came before is looked at again."""
        backoff.reset()
        outage_watch.REDIS.succeeded()
        with self._lock:
            self._listening = True
            self._hearing_all = hearing_all
        self._wake_all()

    def _stop_relying(self, error: Exception) -> None:
        """Waiting requests look for themselves until the subscription is back."""
        self._forget_all()
        self._wake_all()
        if isinstance(error, REDIS_UNAVAILABLE):
            outage_watch.REDIS.failed(error, "listening for job updates")
        else:
            logger.exception("listening for job updates failed; will retry")

    def _forget_all(self) -> None:
        """Stop relying on messages: what was published meanwhile may be lost."""
        with self._lock:
            self._listening = self._hearing_all = False
            self._unheard.clear()

    def _wake(self, job_id: str) -> None:
        with self._lock:
            self._unheard.pop(job_id, None)
            events = list(self._waiting.get(job_id, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for events in self._waiting.values() for event in events]
        for event in events:
            event.set()

    def close(self) -> None:
        """Stop listening (the thread ends within LISTEN_TIMEOUT_S)."""
        self._closed.set()
        self._forget_all()
        self._wake_all()
