"""GET /stream/<jobId> and the long poll, with a real worker streaming from the upstream."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from studychat.chat.answer_stream import deltas_key
from studychat.web.services import services
from tests.support.polling import poll_answer
from tests.support.upstream import control

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.timeout(60)]


def chat(client, stream: bool, text: str = "one two three four five six") -> str:
    body = {"messages": [{"role": "user", "content": text}], "stream": stream}
    answer = client.post("/chat", json=body)
    assert answer.status_code == 202
    return answer.get_json()["jobId"]


def parse_events(raw: str) -> list[tuple[str, dict]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def read_stream(client, job_id: str, headers: dict | None = None) -> list[tuple[str, dict]]:
    answer = client.get(f"/stream/{job_id}", headers=headers or {})
    assert answer.status_code == 200
    assert answer.mimetype == "text/event-stream"
    return parse_events(answer.get_data(as_text=True))


def test_streamed_answer_arrives_in_deltas_then_done(client, upstream):
    control(upstream, {"latency": 1.0})
    job_id = chat(client, stream=True)
    events = read_stream(client, job_id)
    deltas = [data["content"] for name, data in events if name == "delta"]
    assert len(deltas) > 1
    name, response = events[-1]
    assert name == "done"
    assert "".join(deltas) == response["choices"][0]["message"]["content"]
    assert "not from GPT" in response["choices"][0]["message"]["content"]
    # Polling the same job gives the same object.
    assert poll_answer(client, job_id).get_json()["response"] == response


def test_streamed_completion_has_the_shape_of_a_plain_one(client, upstream):
    plain = poll_answer(client, chat(client, stream=False)).get_json()["response"]
    streamed = poll_answer(client, chat(client, stream=True)).get_json()["response"]
    assert list(streamed) == list(plain)
    assert list(streamed["choices"][0]) == list(plain["choices"][0])
    assert streamed["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
    assert streamed["object"] == "chat.completion"


def test_joining_late_still_gives_the_whole_text(client, upstream):
    job_id = chat(client, stream=True)
    full = poll_answer(client, job_id).get_json()["response"]
    events = read_stream(client, job_id)
    text = "".join(data["content"] for name, data in events if name == "delta")
    assert text == full["choices"][0]["message"]["content"]
    assert events[-1] == ("done", full)


def test_a_job_not_streamed_comes_as_one_delta(client, upstream):
    job_id = chat(client, stream=False)
    events = read_stream(client, job_id)
    assert [name for name, _ in events] == ["delta", "done"]
    assert events[0][1]["content"] == events[1][1]["choices"][0]["message"]["content"]


def test_reconnecting_resumes_after_the_last_event(client, upstream):
    job_id = chat(client, stream=True, text=" ".join(f"w{i}" for i in range(40)))
    poll_answer(client, job_id)
    answer = client.get(f"/stream/{job_id}")
    blocks = [b for b in answer.get_data(as_text=True).split("\n\n") if b.startswith("id:")]
    first_id = blocks[0].splitlines()[0].removeprefix("id: ")
    rest = read_stream(client, job_id, headers={"Last-Event-ID": first_id})
    first_text = json.loads(blocks[0].splitlines()[2].removeprefix("data: "))["content"]
    rest_text = "".join(data["content"] for name, data in rest if name == "delta")
    full = rest[-1][1]["choices"][0]["message"]["content"]
    assert first_text + rest_text == full


@pytest.mark.parametrize("stream", [True, False])
def test_failed_job_streams_an_error_event(client, upstream, stream):
    control(upstream, {"faults": [{"status": 500}] * 3})
    events = read_stream(client, chat(client, stream=stream))
    assert events[-1][0] == "error"
    assert "HTTP 500" in events[-1][1]["error"]


def test_unknown_and_malformed_job_ids(client):
    assert client.get(f"/stream/{uuid.uuid4()}").status_code == 404
    answer = client.get("/stream/not-a-job")
    assert answer.status_code == 400
    assert answer.is_json


def test_long_poll_answers_as_soon_as_the_job_ends(client, upstream):
    control(upstream, {"latency": 1.5})
    job_id = chat(client, stream=False)
    started = time.monotonic()
    answer = client.post("/check_response", json={"jobId": job_id, "wait": 20})
    assert answer.status_code == 200
    assert "response" in answer.get_json()
    # One request was enough, and it did not sit out the whole wait.
    assert time.monotonic() - started < 15


def test_long_poll_gives_processing_when_the_wait_runs_out(client, upstream):
    control(upstream, {"faults": [{"delay": 4}]})
    job_id = chat(client, stream=False)
    answer = client.post("/check_response", json={"jobId": job_id, "wait": 0.5})
    assert answer.get_json() == {"processing": True}
    assert poll_answer(client, job_id).status_code == 200


@pytest.mark.parametrize("wait", [-1, 26, "5", None])
def test_long_poll_rejects_bad_waits(client, wait):
    answer = client.post("/check_response", json={"jobId": str(uuid.uuid4()), "wait": wait})
    assert answer.status_code == 400
    assert "'wait'" in answer.get_json()["error"]


def test_a_job_not_streamed_leaves_no_stream_of_deltas_in_redis(client, upstream):
    # A stream of one end marker would take Redis about 4.7 kB for an hour per answer.
    connection = services(client.application).redis
    plain, streamed = chat(client, stream=False), chat(client, stream=True)
    for job_id in (plain, streamed):
        assert poll_answer(client, job_id).status_code == 200
    assert connection.exists(deltas_key(plain)) == 0
    assert connection.exists(deltas_key(streamed)) == 1
    events = read_stream(client, plain)
    assert [name for name, _ in events] == ["delta", "done"]
