"""Which transcript entries the shipper holds back for their delivery notes."""

from __future__ import annotations

import pytest

from studychat.store.held_answers import HeldAnswers

pytestmark = pytest.mark.unit


def answer(job_id: str) -> tuple[bytes, dict, dict]:
    return (f"{job_id}-a".encode(), {}, {"_id": job_id, "status": "finished"})


def note(job_id: str) -> tuple[bytes, dict, dict]:
    return (f"{job_id}-n".encode(), {}, {"_id": job_id, "deliveredAt": "t", "patch": True})


def test_an_answer_and_its_note_in_one_batch_go_together():
    held = HeldAnswers(hold_s=60)
    batch = [answer("a"), note("a")]
    assert held.ready(batch) == batch


def test_an_answer_without_its_note_is_held_and_read_again_with_it():
    held = HeldAnswers(hold_s=60)
    assert held.ready([answer("a"), answer("b"), note("b")]) == [answer("b"), note("b")]
    assert held.holds_all([(b"a-a", {})]) and not held.holds_all([(b"b-a", {})])
    assert held.ready([answer("a"), note("a")]) == [answer("a"), note("a")]
    assert not held.holds_all([(b"a-a", {})])


def test_an_answer_whose_wait_is_over_goes_alone():
    held = HeldAnswers(hold_s=0)
    assert held.ready([answer("a")]) == [answer("a")]


def test_a_note_whose_answer_went_before_goes_at_once():
    held = HeldAnswers(hold_s=60)
    assert held.ready([note("a")]) == [note("a")]


def test_forgetting_holds_nothing():
    held = HeldAnswers(hold_s=60)
    held.ready([answer("a")])
    held.forget()
    assert not held.holds_all([(b"a-a", {})])
