"""Deciding from samples of requests whether they come back to the process that queued."""

from __future__ import annotations

import pytest

from studychat.web.returning_requests import QueuedHere, ReturningShare

pytestmark = pytest.mark.unit


def test_a_sample_that_mostly_comes_back_says_so_once_the_rest_cannot_change_it():
    share = ReturningShare(sample=10, share=0.8)
    answers = [share.count(False), share.count(False)] + [share.count(True) for _ in range(8)]
    assert answers == [None] * 9 + [True]  # eight of ten, at the tenth
    assert [share.count(True) for _ in range(8)] == [None] * 7 + [True]  # at the eighth


def test_a_sample_that_mostly_does_not_says_so_and_a_new_one_starts():
    share = ReturningShare(sample=10, share=0.8)
    first = [share.count(number % 2 == 0) for number in range(6)]
    # Half came back: after three of six away, at most seven of ten could.
    assert first == [None] * 5 + [False]
    assert [share.count(True) for _ in range(8)] == [None] * 7 + [True]


def test_a_share_below_the_mark_is_not_taken_for_one_above_it():
    share = ReturningShare(sample=10, share=0.8)
    answers = [share.count(number not in (0, 5, 9)) for number in range(10)]
    assert answers[:9] == [None] * 9  # undecided while eight of ten could still come back
    assert answers[9] is False  # seven of ten


def test_only_the_most_recent_jobs_are_recognised():
    queued = QueuedHere(kept=3)
    for number in range(4):
        queued.add(f"job-{number}")
    assert "job-0" not in queued
    assert all(f"job-{number}" in queued for number in range(1, 4))
    assert "queued-elsewhere" not in queued
