"""POST /chat and POST /check_response against a real worker, Redis and upstream."""

from __future__ import annotations

import uuid

import pytest

from tests.support.polling import poll_answer
from tests.support.upstream import control, upstream_requests

pytestmark = pytest.mark.usefixtures("worker")

HELLO = {"messages": [{"role": "user", "content": "hello there"}]}
IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
    "hQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_chat_answers_202_with_a_job_id(client, upstream):
    answer = client.post("/chat", json=HELLO)
    assert answer.status_code == 202
    assert set(answer.get_json()) == {"jobId"}
    assert isinstance(answer.get_json()["jobId"], str)


def test_check_response_gives_the_upstream_completion(client, upstream):
    job_id = client.post("/chat", json=HELLO).get_json()["jobId"]
    answer = poll_answer(client, job_id)
    assert answer.status_code == 200
    completion = answer.get_json()["response"]
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert "hello there" in completion["choices"][0]["message"]["content"]
    assert completion["usage"]["total_tokens"] > 0
    # Fields the OpenAI API sends are passed on untouched, nulls included.
    assert completion["choices"][0]["message"]["refusal"] is None


def test_processing_while_the_model_is_thinking(client, upstream):
    control(upstream, {"faults": [{"delay": 3}]})
    job_id = client.post("/chat", json=HELLO).get_json()["jobId"]
    first = client.post("/check_response", json={"jobId": job_id})
    assert first.status_code == 200
    assert first.get_json() == {"processing": True}
    assert poll_answer(client, job_id).status_code == 200


def test_model_and_cap_come_from_settings_not_the_client(client, upstream):
    body = {**HELLO, "model": "gpt-4-32k", "max_tokens": 100000, "temperature": 2}
    job_id = client.post("/chat", json=body).get_json()["jobId"]
    assert poll_answer(client, job_id).status_code == 200
    sent = upstream_requests(upstream)[-1]["body"]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_tokens"] == 300
    assert "temperature" not in sent


def test_image_becomes_content_parts(client, upstream):
    message = {"role": "user", "content": "what is this?", "image": IMAGE}
    job_id = client.post("/chat", json={"messages": [message]}).get_json()["jobId"]
    assert poll_answer(client, job_id).status_code == 200
    sent = upstream_requests(upstream)[-1]["body"]["messages"]
    assert sent == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": IMAGE, "detail": "low"}},
            ],
        }
    ]


def test_conversation_roles_are_forwarded_in_order(client, upstream):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    job_id = client.post("/chat", json={"messages": messages, "participantId": "P1"})
    assert poll_answer(client, job_id.get_json()["jobId"]).status_code == 200
    assert upstream_requests(upstream)[-1]["body"]["messages"] == messages


def test_unknown_job_is_404(client):
    answer = client.post("/check_response", json={"jobId": str(uuid.uuid4())})
    assert answer.status_code == 404
    assert "jobId" in answer.get_json()["error"]


def test_failed_model_call_is_502_with_a_sentence(client, upstream):
    control(upstream, {"faults": [{"status": 500}, {"status": 500}, {"status": 500}]})
    job_id = client.post("/chat", json=HELLO).get_json()["jobId"]
    answer = poll_answer(client, job_id, timeout=30)
    assert answer.status_code == 502
    error = answer.get_json()["error"]
    assert "HTTP 500" in error
    assert "3 attempts" in error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({**HELLO, "participantId": {"$ne": None}}, "participantId"),
        ({**HELLO, "participantId": ""}, "participantId"),
    ],
)
def test_chat_rejects_bad_bodies_naming_the_field(client, body, field):
    answer = client.post("/chat", json=body)
    assert answer.status_code == 400
    assert f"'{field}'" in answer.get_json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"jobId": 12},
        {"jobId": ""},
        {"jobId": None},
        {"jobId": "no-such-job"},
        {"jobId": {"$ne": ""}},
        {"jobId": str(uuid.uuid4()).upper()},
        {"jobId": "rq:job:" + str(uuid.uuid4())},
    ],
)
def test_check_response_rejects_bad_job_ids(client, body):
    answer = client.post("/check_response", json=body)
    assert answer.status_code == 400
    assert "'jobId'" in answer.get_json()["error"]


def test_non_json_body_is_400(client):
    answer = client.post("/chat", data="not json", content_type="application/json")
    assert answer.status_code == 400
    assert "JSON" in answer.get_json()["error"]
