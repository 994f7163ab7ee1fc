"""Outage and Backoff: one log line when an outage starts, one when it ends, bounded waits."""

from __future__ import annotations

import logging
import threading

import redis

from studychat.outage_watch import Backoff, Outage


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_reset():
    backoff = Backoff(first=0.25, cap=2.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.next_delay() == 0.25


def test_an_outage_is_said_once_when_it_starts_and_once_when_it_ends(caplog):
    outage = Outage("Redis")
    error = redis.exceptions.ConnectionError("refused")
    with caplog.at_level(logging.INFO, logger="outage_watch"):
        outage.succeeded()  # nothing to say while all is well
        # Every thread of a worker reports its failures; the log says it once.
        threads = [
            threading.Thread(target=outage.failed, args=(error, f"task {i}")) for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outage.ongoing
        for _ in range(5):
            outage.succeeded()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Redis unavailable (ConnectionError while task ")
    assert lines[1].startswith("Redis is back after ")
    assert not outage.ongoing


def test_a_second_outage_is_said_again(caplog):
    outage = Outage("MongoDB")
    with caplog.at_level(logging.INFO, logger="outage_watch"):
        for _ in range(2):
            outage.failed(TimeoutError(), "shipping")
            outage.succeeded()
    assert len(caplog.records) == 4
