"""Deciding from a sample of polls whether they come back to the process that queued."""

from __future__ import annotations

import pytest

from studychat.web.returning_polls import RECENT_KEPT, ReturningPolls

pytestmark = pytest.mark.unit


def test_a_sample_of_polls_that_mostly_come_back_says_so_at_its_end():
    polls = ReturningPolls(sample=10, share=0.8)
    for number in range(8):
        polls.queued(f"job-{number}")
    answers = [polls.polled(f"job-{number}") for number in range(8)]
    answers += [polls.polled("queued-elsewhere") for _ in range(2)]
    assert answers == [False] * 9 + [True]


def test_a_sample_that_falls_short_starts_a_new_one():
    polls = ReturningPolls(sample=10, share=0.8)
    polls.queued("mine")
    first = [polls.polled("mine" if number % 2 else "theirs") for number in range(10)]
    assert not any(first)  # half came back: not enough
    assert [polls.polled("mine") for _ in range(10)] == [False] * 9 + [True]


def test_only_the_most_recent_jobs_are_recognised():
    polls = ReturningPolls(sample=1, share=1.0)
    for number in range(RECENT_KEPT + 1):
        polls.queued(f"job-{number}")
    assert not polls.polled("job-0")
    assert polls.polled(f"job-{RECENT_KEPT}")
