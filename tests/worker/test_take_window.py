"""The wait before a take: only while jobs come fast enough to share it."""

from __future__ import annotations

from studychat.worker.take_window import COMPANY, RATE_SPAN_S, TakeWindow


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_wait_before_jobs_have_come():
    assert TakeWindow(0.05, Clock()).wait_s() == 0.0


def test_waits_the_window_while_a_job_or_more_is_expected_within_it():
    clock = Clock()
    window = TakeWindow(0.05, clock)
    window.note_taken(19)  # 19 a second: under one expected within 50 ms
    assert window.wait_s() == 0.0
    window.note_taken(1)  # 20 a second: one expected
    assert window.wait_s() == 0.05


def test_the_rate_forgets_takes_older_than_its_span():
    clock = Clock()
    window = TakeWindow(0.05, clock)
    window.note_taken(15)
    clock.now += RATE_SPAN_S / 2
    window.note_taken(15)
    assert window.wait_s() == 0.05  # 30 a second
    clock.now += RATE_SPAN_S * 0.6  # the first 15 are older than the span now
    assert window.wait_s() == 0.0
    window.note_taken(5)
    assert window.wait_s() == 0.05  # 20 a second again
    clock.now += RATE_SPAN_S
    assert window.wait_s() == 0.0


def test_at_a_high_rate_it_waits_only_for_two_more_jobs():
    window = TakeWindow(0.05, Clock())
    window.note_taken(200)  # 200 a second: two more come within 10 ms
    assert COMPANY == 2
    assert window.wait_s() == 0.01


def test_takes_older_than_the_span_are_not_kept_while_no_wait_is_asked():
    clock = Clock()
    window = TakeWindow(0.05, clock)
    for _ in range(1000):  # saturated: takes of 32, never a wait asked for
        window.note_taken(32)
        clock.now += 0.1
    assert len(window._takes) <= RATE_SPAN_S / 0.1 + 1


def test_a_window_of_zero_never_waits():
    window = TakeWindow(0.0, Clock())
    window.note_taken(10_000)
    assert window.wait_s() == 0.0


def test_a_longer_window_needs_a_lower_rate():
    clock = Clock()
    window = TakeWindow(0.2, clock)
    window.note_taken(5)  # 5 a second: one expected within 200 ms
    assert window.wait_s() == 0.2
