"""Deciding from samples of requests whether they come back to the process that queued."""

from __future__ import annotations

import pytest

from studychat.web.returning_requests import QueuedHere, ReturningShare

pytestmark = pytest.mark.unit


def test_a_sample_that_mostly_came_back_says_so_at_its_end():
    share = ReturningShare(sample=10, share=0.8)
    answers = [share.count(True) for _ in range(8)] + [share.count(False) for _ in range(2)]
    assert answers == [None] * 9 + [True]


def test_a_sample_that_mostly_did_not_says_so_and_a_new_one_starts():
    share = ReturningShare(sample=10, share=0.8)
    first = [share.count(number % 2 == 0) for number in range(10)]
    assert first == [None] * 9 + [False]  # half came back: not enough
    assert [share.count(True) for _ in range(10)] == [None] * 9 + [True]


def test_only_the_most_recent_jobs_are_recognised():
    queued = QueuedHere(kept=3)
    for number in range(4):
        queued.add(f"job-{number}")
    assert "job-0" not in queued
    assert all(f"job-{number}" in queued for number in range(1, 4))
    assert "queued-elsewhere" not in queued
