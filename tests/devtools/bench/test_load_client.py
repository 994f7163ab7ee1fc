"""The load generator's pure parts: timing of starts and polls, HTTP framing, answers."""

from __future__ import annotations

import pytest

from devtools.bench.load_client import (
    LoadPlan,
    RequestFailed,
    TurnRecord,
    answer_text,
    chat_body,
    describe_error,
    next_poll_delay,
    parse_head,
    request_bytes,
    start_delay,
    user_message,
)


def test_starts_are_spread_evenly_over_the_stagger():
    plan = LoadPlan(participants=4, turns=1, stagger_s=1.0)
    assert [start_delay(i, plan) for i in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert start_delay(0, LoadPlan(participants=1, turns=1)) == 0.0


def test_polls_keep_to_a_fixed_grid_like_set_interval():
    assert next_poll_delay(sent=10.0, now=10.0, interval=0.5) == pytest.approx(0.5)
    # A poll answered late waits only for the next tick, never a whole interval.
    assert next_poll_delay(sent=10.0, now=10.6, interval=0.5) == pytest.approx(0.4)
    assert next_poll_delay(sent=10.0, now=11.0, interval=0.5) == pytest.approx(0.5)


def test_request_is_a_keep_alive_post_with_its_length():
    raw = request_bytes("127.0.0.1", "/chat", b'{"a": 1}')
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /chat HTTP/1.1\r\n")
    assert b"Content-Length: 8" in head and b"Connection: keep-alive" in head
    assert body == b'{"a": 1}'


def test_head_gives_status_length_and_keep_alive():
    head = b"HTTP/1.1 202 ACCEPTED\r\nServer: gunicorn\r\nContent-Length: 45\r\n\r\n"
    assert parse_head(head) == (202, 45, True)
    closing = b"HTTP/1.1 200 OK\r\nCONNECTION: Close\r\ncontent-length: 2\r\n\r\n"
    assert parse_head(closing) == (200, 2, False)
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")[2] is False


def test_head_that_cannot_be_read_is_a_failure_not_a_crash():
    with pytest.raises(RequestFailed, match="malformed status line"):
        parse_head(b"garbage\r\n\r\n")
    with pytest.raises(RequestFailed, match="chunked"):
        parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


def test_answer_text_is_the_completion_message():
    body = {"response": {"choices": [{"message": {"role": "assistant", "content": "Hi"}}]}}
    assert answer_text(body) == "Hi"
    with pytest.raises(RequestFailed):
        answer_text({"response": {"choices": []}})


def test_each_turn_says_who_and_which_turn():
    assert user_message(3, 0) == {
        "role": "user",
        "content": "Participant 3, turn 1: what do you think?",
    }


def test_a_session_turn_sends_only_the_new_message_with_its_token():
    plan = LoadPlan(participants=2, turns=2, run_id="run", sessions=True)
    conversation = [user_message(1, 0), {"role": "assistant", "content": "hi"}, user_message(1, 1)]
    assert chat_body(plan, conversation, 1, "tok") == {
        "sessionToken": "tok",
        "message": {"content": "Participant 1, turn 2: what do you think?"},
    }


def test_a_legacy_turn_sends_the_whole_conversation_and_an_id():
    plan = LoadPlan(participants=2, turns=2, run_id="run")
    conversation = [user_message(1, 0)]
    assert chat_body(plan, conversation, 1, None) == {
        "messages": conversation,
        "participantId": "run-1",
    }


def test_errors_get_short_countable_names():
    assert describe_error(RequestFailed("POST /chat answered 500")) == "POST /chat answered 500"
    assert describe_error(TimeoutError()) == "request timed out"
    assert describe_error(ConnectionResetError()) == "ConnectionResetError"


def test_wait_is_known_only_once_answered():
    record = TurnRecord(participant=0, turn=0, started=5.0)
    assert record.wait_s is None
    record.answered = 7.25
    assert record.wait_s == pytest.approx(2.25)
