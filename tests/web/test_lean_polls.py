"""Polls that say "processing" are answered by the lean path exactly as the app would."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask, request, request_started

from studychat.chat.outcomes import DELIVERED, outcome_key
from studychat.web.errors import QUEUE_DOWN
from tests.support.chat_helpers import start_chats
from tests.support.polling import wait_for
from tests.support.stack import FRONTEND
from tests.web.routes.test_metrics import BEARER, sample

OTHER_ORIGIN = "https://not-the-frontend.example"
PER_REQUEST = ("X-Request-ID", "Date")


@pytest.fixture()
def app_requests(own_app: Flask) -> Iterator[list[str]]:
    """The paths of the requests the Flask app itself handled (not the lean path)."""
    seen: list[str] = []

    def note(sender: Flask, **_: object) -> None:
        seen.append(request.path)

    request_started.connect(note, own_app)
    yield seen
    request_started.disconnect(note, own_app)


def comparable(answer) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(name, value) for name, value in answer.headers if name not in PER_REQUEST]
    return answer.status_code, answer.get_data(), headers


@pytest.mark.parametrize("origin", [FRONTEND, OTHER_ORIGIN, None])
def test_a_processing_poll_gets_the_apps_own_answer_without_the_app(own_app, app_requests, origin):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)  # no worker runs: the job stays queued
    headers = {"Origin": origin} if origin else {}
    by_app = client.post("/check_response", json={"jobId": job_id}, headers=headers)
    handled = len(app_requests)
    lean = client.post("/check_response", json={"jobId": job_id}, headers=headers)
    assert len(app_requests) == handled  # the app never saw the second poll
    assert lean.get_json() == {"processing": True}
    assert comparable(lean) == comparable(by_app)
    assert lean.headers["X-Request-ID"] != by_app.headers["X-Request-ID"]
    if origin == FRONTEND:
        assert lean.headers["Access-Control-Allow-Origin"] == FRONTEND
    elif origin == OTHER_ORIGIN:
        assert "Access-Control-Allow-Origin" not in lean.headers


def test_the_lean_path_echoes_the_proxys_request_id(own_app):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    for _ in range(2):
        answer = client.post(
            "/check_response", json={"jobId": job_id}, headers={"X-Request-ID": "router-id-7"}
        )
    assert answer.headers["X-Request-ID"] == "router-id-7"


def test_every_other_poll_is_the_apps_to_answer(own_app, app_requests):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    client.post("/check_response", json={"jobId": job_id})  # learned from here on
    unknown = client.post("/check_response", json={"jobId": str(uuid.uuid4())})
    assert unknown.status_code == 404
    assert "jobId" in unknown.get_json()["error"]
    malformed = client.post("/check_response", json={"jobId": "not an id"})
    assert malformed.status_code == 400
    assert "jobId" in malformed.get_json()["error"]
    as_text = client.post("/check_response", data=f'{{"jobId": "{job_id}"}}')
    assert as_text.status_code == 400
    too_deep = client.post("/check_response", data="[" * 1024, content_type="application/json")
    assert too_deep.status_code == 400
    assert app_requests.count("/check_response") == 5


def test_a_redis_outage_is_still_answered_503_by_the_app(own_app, own_redis):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    client.post("/check_response", json={"jobId": job_id})
    own_redis.stop()
    answer = client.post("/check_response", json={"jobId": job_id})
    assert answer.status_code == 503
    assert answer.get_json() == {"error": QUEUE_DOWN}


def test_lean_polls_are_counted_in_the_request_metrics(own_app):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    ok = {"method": "POST", "route": "/check_response", "status": "200"}
    before = (
        sample(
            client.get("/metrics", headers=BEARER).get_data(as_text=True),
            "http_requests_total",
            **ok,
        )
        or 0
    )
    for _ in range(3):
        client.post("/check_response", json={"jobId": job_id})
    text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    assert sample(text, "http_requests_total", **ok) - before == 3


def test_an_answer_is_the_apps_own_and_is_marked_delivered(
    own_app, own_stack_env, start_worker, upstream, app_requests, connection
):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    client.post("/check_response", json={"jobId": job_id}, headers={"Origin": FRONTEND})
    start_worker(own_stack_env)

    def answered():
        poll = client.post("/check_response", json={"jobId": job_id}, headers={"Origin": FRONTEND})
        return None if poll.get_json() == {"processing": True} else poll

    lean = wait_for(answered, timeout=20, interval=0.05)
    assert app_requests.count("/check_response") == 1  # only the first, processing poll
    assert "response" in lean.get_json()
    assert connection.hget(outcome_key(job_id), DELIVERED) is not None
    # An origin it has learned nothing of yet is the app's: it answers the same way.
    by_app = client.post(
        "/check_response", json={"jobId": job_id}, headers={"Origin": OTHER_ORIGIN}
    )
    assert app_requests.count("/check_response") == 2
    assert comparable(lean)[:2] == comparable(by_app)[:2]
    assert without_cors(comparable(lean)[2]) == without_cors(comparable(by_app)[2])


def without_cors(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers that do not depend on the request's Origin."""
    return [
        (name, value)
        for name, value in headers
        if not name.startswith("Access-Control-") and name != "Vary"
    ]


def test_a_long_poll_waits_in_the_lean_path_and_gets_the_answer(
    own_app, own_stack_env, start_worker, upstream, app_requests, connection
):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    headers = {"Origin": FRONTEND}
    by_app = client.post("/check_response", json={"jobId": job_id, "wait": 0.2}, headers=headers)
    assert by_app.get_json() == {"processing": True}
    still = client.post("/check_response", json={"jobId": job_id, "wait": 0.2}, headers=headers)
    assert app_requests.count("/check_response") == 1
    assert comparable(still) == comparable(by_app)
    start_worker(own_stack_env)
    answered = client.post("/check_response", json={"jobId": job_id, "wait": 20}, headers=headers)
    assert app_requests.count("/check_response") == 1
    assert "response" in answered.get_json()
    assert connection.hget(outcome_key(job_id), DELIVERED) is not None
    again = client.post("/check_response", json={"jobId": job_id}, headers={"Origin": OTHER_ORIGIN})
    assert comparable(answered)[:2] == comparable(again)[:2]


def test_headers_are_learned_from_an_answer_as_from_processing(
    own_app, own_stack_env, start_worker, upstream, app_requests
):
    client = own_app.test_client()
    start_worker(own_stack_env)
    first, second = start_chats(client, 2)
    headers = {"Origin": FRONTEND}
    by_app = client.post("/check_response", json={"jobId": first, "wait": 20}, headers=headers)
    assert "response" in by_app.get_json()
    lean = client.post("/check_response", json={"jobId": second, "wait": 20}, headers=headers)
    assert app_requests.count("/check_response") == 1
    assert "response" in lean.get_json()
    assert comparable(lean)[2] == comparable(by_app)[2]
    processing = client.post("/check_response", json={"jobId": str(uuid.uuid4())}, headers=headers)
    assert processing.status_code == 404  # an unknown job is still the app's


def counted(client, status: str) -> float:
    labels = {"method": "POST", "route": "/check_response", "status": status}
    text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    return sample(text, "http_requests_total", **labels) or 0


def test_the_first_poll_from_an_origin_is_counted_once_whoever_answers_it(own_app, app_requests):
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    before = counted(client, "200"), counted(client, "404")
    headers = {"Origin": FRONTEND}
    unknown = client.post(
        "/check_response", json={"jobId": str(uuid.uuid4()), "wait": 5}, headers=headers
    )
    assert unknown.status_code == 404  # at once: an unknown job is over
    first = client.post("/check_response", json={"jobId": job_id, "wait": 0.3}, headers=headers)
    assert first.get_json() == {"processing": True}
    assert app_requests.count("/check_response") == 2  # each asked once, without its wait
    assert (counted(client, "200"), counted(client, "404")) == (before[0] + 1, before[1] + 1)
