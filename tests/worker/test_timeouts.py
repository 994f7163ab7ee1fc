"""The watchdog that times out jobs on worker threads: it fires on time, and only then."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from studychat.worker.timeouts import COMPACT_ABOVE, Watchdog
from tests.support.polling import wait_for


class Expired(Exception):
    """The exception the watchdog raises in a thread past its deadline."""


class BusyThread(threading.Thread):
    """A thread that runs Python until the watchdog stops it, and notes when."""

    def __init__(self, seconds: float) -> None:
        super().__init__(daemon=True)
        self.ready = threading.Event()
        self.stopped_at: float | None = None
        self.give_up = time.monotonic() + seconds

    def run(self) -> None:
        self.ready.set()
        try:
            while time.monotonic() < self.give_up:
                time.sleep(0.001)
        except Expired:
            self.stopped_at = time.monotonic()


@pytest.fixture()
def dog() -> Iterator[Watchdog]:
    watchdog = Watchdog()
    watchdog.start()
    yield watchdog


def busy(seconds: float = 10) -> BusyThread:
    thread = BusyThread(seconds)
    thread.start()
    thread.ready.wait(5)
    return thread


def test_a_thread_past_its_deadline_is_stopped_then(dog):
    thread = busy()
    armed_at = time.monotonic()
    dog.arm(0.3, thread.ident, Expired)
    thread.join(5)
    assert thread.stopped_at is not None
    assert 0.3 <= thread.stopped_at - armed_at < 2


def test_an_earlier_deadline_armed_after_a_later_one_fires_first(dog):
    late, early = busy(), busy()
    dog.arm(8, late.ident, Expired)
    wait_for(lambda: dog.wakeups >= 1)  # the watchdog now sleeps until the late deadline
    armed_at = time.monotonic()
    dog.arm(0.3, early.ident, Expired)
    early.join(5)
    assert early.stopped_at is not None and early.stopped_at - armed_at < 2
    assert late.is_alive() and late.stopped_at is None


def test_a_cancelled_deadline_never_fires(dog):
    thread = busy(1)
    dog.disarm(dog.arm(0.2, thread.ident, Expired))
    thread.join(5)
    assert not thread.is_alive()
    assert thread.stopped_at is None  # it ran to its own end


def test_jobs_with_the_same_timeout_do_not_wake_the_watchdog(dog):
    thread = busy(1)
    dog.disarm(dog.arm(600, thread.ident, Expired))
    wait_for(lambda: dog.wakeups >= 1)
    woken = dog.wakeups
    for _ in range(50):  # jobs arriving, each deadline later than the one it waits for
        dog.disarm(dog.arm(600, thread.ident, Expired))
        time.sleep(0.01)  # pacing, as jobs come: room for the watchdog to wake if told to
    assert dog.wakeups == woken


def test_finished_jobs_deadlines_do_not_pile_up(dog):
    thread = busy(1)
    in_flight = [dog.arm(600, thread.ident, Expired) for _ in range(100)]
    for _ in range(20 * COMPACT_ABOVE):  # a ten-minute timeout at a few hundred jobs a second
        dog.disarm(dog.arm(600, thread.ident, Expired))
    assert dog.held() <= COMPACT_ABOVE
    for token in in_flight:
        dog.disarm(token)
    assert thread.stopped_at is None
