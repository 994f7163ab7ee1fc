"""The fake OpenAI server, called through the real `openai` client (and urllib for the rest)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import select
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from devtools import fake_openai
from devtools.fake_openai import FakeOpenAI
from tests.support.polling import wait_for

# It starts real servers or processes.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "[dry run] This reply is not from GPT. You said: "
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
MODEL = "gpt-4o-mini"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """One in-process fake server for the module."""
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(fake: FakeOpenAI) -> None:
    """Each test starts with no faults, an empty log and the initial latency."""
    control(fake.base_url, {"reset": True})


@pytest.fixture()
def api(fake: FakeOpenAI) -> openai.OpenAI:
    """The real client, pointed at the fake, without retries."""
    return make_client(fake.base_url)


def make_client(base_url: str, **options: Any) -> openai.OpenAI:
    """A real `openai` client for `base_url`; no retries unless asked."""
    options = {"max_retries": 0, "timeout": 30.0, **options}
    return openai.OpenAI(api_key="sk-test", base_url=base_url, **options)


def call(
    base_url: str, method: str, path: str, payload: Any = None, headers: dict | None = None
) -> tuple[int, dict[str, str], Any]:
    """Status, lowercased headers and JSON body of a plain HTTP request to the fake."""
    url = base_url.removesuffix("/v1") + path
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, head, body = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, head, body = error.code, error.headers, error.read()
    return status, {name.lower(): value for name, value in head.items()}, json.loads(body)


def control(base_url: str, payload: dict) -> dict:
    """POST /_control and return the fake's control state."""
    status, _, body = call(base_url, "POST", "/_control", payload)
    assert status == 200, body
    return body


def logged(base_url: str) -> list[dict]:
    """The completion requests the fake received since its last reset."""
    return call(base_url, "GET", "/_requests")[2]["requests"]


def stats(base_url: str) -> dict:
    """The fake's counters."""
    return call(base_url, "GET", "/_stats")[2]


def ask(client: openai.OpenAI, **options: Any) -> Any:
    """One chat completion with the default model and messages."""
    return client.chat.completions.create(**{"model": MODEL, "messages": USER, **options})


# Completions


def test_completion_is_shaped_like_openais(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    reply = ask(api)
    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-") and len(reply.id) > 20
    assert reply.model == MODEL and reply.created > 0 and reply.system_fingerprint
    [choice] = reply.choices
    assert choice.index == 0 and choice.finish_reason == "stop" and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.message.content == PREFIX + "Hello there"
    usage = reply.usage
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.prompt_tokens == 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [entry] = logged(fake.base_url)
    assert entry["body"] == {"model": MODEL, "messages": USER}
    assert entry["headers"]["authorization"] == "Bearer sk-test" and entry["fault"] is None


def test_reply_quotes_the_first_200_characters_of_the_last_user_message(
    api: openai.OpenAI,
) -> None:
    long_text = " ".join(f"word{i}" for i in range(100))
    messages = [
        *USER,
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": long_text},
    ]
    reply = ask(api, messages=messages)
    assert reply.choices[0].message.content == PREFIX + long_text[:200]


def test_image_part_is_mentioned(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    image = {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": image}]
    reply = ask(api, messages=[{"role": "user", "content": parts}])
    assert reply.choices[0].message.content == PREFIX + "What is this? (with an image)"
    assert logged(fake.base_url)[0]["body"]["messages"][0]["content"] == parts


@pytest.mark.parametrize("model", ["gpt-5-mini", "gpt-5", "o1", "o3-mini", "o4-mini"])
def test_reasoning_models_refuse_max_tokens(api: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, model=model, max_tokens=50)
    error = caught.value
    assert error.param == "max_tokens" and error.code == "unsupported_parameter"
    assert error.type == "invalid_request_error"
    assert error.message.endswith(
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )
    reply = ask(api, model=model, max_completion_tokens=50)
    assert reply.model == model and reply.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_other_models_accept_either_cap(api: openai.OpenAI, cap: str) -> None:
    reply = ask(api, **{cap: 50})
    assert reply.choices[0].message.content == PREFIX + "Hello there"


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
def test_cap_cuts_the_reply_to_that_many_words(api: openai.OpenAI, cap: str) -> None:
    reply = ask(api, **{cap: 4})
    assert reply.choices[0].message.content == "[dry run] This reply"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 4


@pytest.mark.parametrize("cap", [0, -1, "ten"])
def test_invalid_cap_is_refused(api: openai.OpenAI, cap: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        ask(api, max_completion_tokens=cap)
    assert caught.value.param == "max_completion_tokens"


def test_models_list_one_model(api: openai.OpenAI) -> None:
    assert [model.id for model in api.models.list()] == [fake_openai.MODEL_ID]


# Streaming


def test_stream_sends_the_same_text_in_pieces_then_usage(api: openai.OpenAI) -> None:
    plain = ask(api).choices[0].message.content
    chunks = list(ask(api, stream=True, stream_options={"include_usage": True}))
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].model == MODEL
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3 and "".join(pieces) == plain
    reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert reasons[-1] == "stop" and set(reasons[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(pieces)
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + len(pieces)


def test_async_client_streams_a_capped_reply_without_usage(fake: FakeOpenAI) -> None:
    async def collect() -> list[Any]:
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=fake.base_url, max_retries=0, timeout=30
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-5-mini", messages=USER, max_completion_tokens=3, stream=True
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(collect())
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "[dry run] This"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)


def test_stream_with_latency_completes(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    control(fake.base_url, {"latency": 0.2})
    text = "".join(c.choices[0].delta.content or "" for c in ask(api, stream=True))
    assert text == PREFIX + "Hello there"


# Faults


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
        (403, openai.PermissionDeniedError, "invalid_request_error"),
    ],
)
def test_status_fault_reaches_the_client(
    api: openai.OpenAI, fake: FakeOpenAI, status: int, error_class: type, error_type: str
) -> None:
    control(fake.base_url, {"faults": [{"status": status}]})
    with pytest.raises(error_class) as caught:
        ask(api)
    assert caught.value.status_code == status and caught.value.type == error_type
    assert "retry-after" not in caught.value.response.headers
    assert ask(api).choices[0].finish_reason == "stop"  # one fault, one request


def test_rate_limit_fault_sends_retry_after(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    control(fake.base_url, {"faults": [{"status": 429, "retry_after": 1}]})
    with pytest.raises(openai.RateLimitError) as caught:
        ask(api)
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    assert [entry["fault"] for entry in logged(fake.base_url)] == [
        {"status": 429, "retry_after": 1}
    ]


def test_client_retries_after_a_rate_limit(fake: FakeOpenAI) -> None:
    control(fake.base_url, {"faults": [{"status": 429, "retry_after": 0.1}]})
    raw = make_client(fake.base_url, max_retries=1).chat.completions.with_raw_response.create(
        model=MODEL, messages=USER
    )
    assert raw.retries_taken == 1 and raw.parse().choices[0].finish_reason == "stop"


def test_fault_error_body_can_be_overridden(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    quota = {"status": 429, "type": "insufficient_quota", "code": "insufficient_quota"}
    control(fake.base_url, {"faults": [{**quota, "message": "You exceeded your quota."}]})
    with pytest.raises(openai.RateLimitError) as caught:
        ask(api)
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert caught.value.message.endswith("You exceeded your quota.")


def test_faults_apply_in_order_one_per_request(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    faults = [{"status": 500}, {"status": 429}, {"drop": True}]
    assert control(fake.base_url, {"faults": faults})["faults"] == 3
    with pytest.raises(openai.InternalServerError):
        ask(api)
    with pytest.raises(openai.RateLimitError):
        ask(api)
    with pytest.raises(openai.APIConnectionError):
        ask(api)
    assert ask(api).choices[0].finish_reason == "stop"
    assert [entry["fault"] for entry in logged(fake.base_url)] == [*faults, None]


def test_hang_fault_times_the_client_out(fake: FakeOpenAI) -> None:
    control(fake.base_url, {"faults": [{"hang": True}]})
    with (
        make_client(fake.base_url, timeout=1.0) as impatient,
        pytest.raises(openai.APITimeoutError),
    ):
        ask(impatient)
    wait_for(lambda: stats(fake.base_url)["in_flight"] == 0, timeout=10)


def test_drop_fault_closes_the_connection(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    control(fake.base_url, {"faults": [{"drop": True}]})
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(api)
    assert not isinstance(caught.value, openai.APITimeoutError)


def test_delay_fault_slows_one_answer() -> None:
    with FakeOpenAI() as server:
        control(server.base_url, {"faults": [{"delay": 60}]})
        impatient = make_client(server.base_url, timeout=1.0)
        with impatient, pytest.raises(openai.APITimeoutError):
            ask(impatient)
        with make_client(server.base_url) as patient:
            assert ask(patient).choices[0].finish_reason == "stop"  # only one answer was slow
        figures = stats(server.base_url)
        assert (figures["completions"], figures["in_flight"], figures["max_in_flight"]) == (2, 1, 2)


# HTTP errors and control


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic c2stdGVzdA=="}]
)
def test_missing_key_is_401(fake: FakeOpenAI, headers: dict) -> None:
    status, _, body = call(
        fake.base_url, "POST", "/v1/chat/completions", {"model": MODEL, "messages": USER}, headers
    )
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "API key" in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("missing", ["model", "messages"])
def test_missing_parameter_is_400(fake: FakeOpenAI, missing: str) -> None:
    payload = {"model": MODEL, "messages": USER}
    del payload[missing]
    auth = {"Authorization": "Bearer sk-test"}
    status, _, body = call(fake.base_url, "POST", "/v1/chat/completions", payload, auth)
    assert status == 400
    assert body["error"]["param"] == missing
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "missing_required_parameter"


def test_unknown_path_is_404_and_wrong_method_405(fake: FakeOpenAI) -> None:
    status, _, body = call(fake.base_url, "GET", "/v1/nothing")
    assert status == 404 and body["error"]["type"] == "invalid_request_error"
    status, headers, body = call(fake.base_url, "GET", "/v1/chat/completions")
    assert status == 405 and headers["allow"] == "POST" and "error" in body


@pytest.mark.parametrize(
    "faults",
    ["hang", [{"status": 200}], [{"hang": True, "drop": True}], [{"delay": -1}], [{"other": 1}]],
)
def test_control_refuses_malformed_faults(fake: FakeOpenAI, faults: Any) -> None:
    status, _, body = call(fake.base_url, "POST", "/_control", {"faults": faults})
    assert status == 400 and body["error"]["param"] == "faults"
    assert control(fake.base_url, {})["faults"] == 0


def test_reset_restores_the_initial_state(api: openai.OpenAI, fake: FakeOpenAI) -> None:
    ask(api)
    state = control(fake.base_url, {"latency": 5, "jitter": 1, "faults": [{"status": 500}]})
    assert state == {"latency": 5.0, "jitter": 1.0, "faults": 1}
    assert control(fake.base_url, {"reset": True}) == {"latency": 0.0, "jitter": 0.0, "faults": 0}
    assert logged(fake.base_url) == []
    # Two connections since the reset: the requests for the log above and for these figures.
    assert stats(fake.base_url) == {
        "completions": 0,
        "in_flight": 0,
        "max_in_flight": 0,
        "connections": 2,
    }
    assert ask(api).choices[0].finish_reason == "stop"


def test_request_log_keeps_the_latest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_openai, "MAX_LOGGED_REQUESTS", 3)
    with FakeOpenAI() as server:
        client = make_client(server.base_url)
        for number in range(5):
            ask(client, messages=[{"role": "user", "content": f"number {number}"}])
        bodies = [entry["body"]["messages"][0]["content"] for entry in logged(server.base_url)]
    assert bodies == ["number 2", "number 3", "number 4"]


def test_connections_are_kept_alive(fake: FakeOpenAI) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        connection.request("GET", "/_stats")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/v1/models")
        second = connection.getresponse()
        assert json.loads(second.read())["object"] == "list"
        assert connection.sock is sock is not None  # the same connection served both
    finally:
        connection.close()
    assert first.getheader("connection") == "keep-alive" and second.status == 200


# Concurrency and the command line


def test_300_concurrent_requests_are_served_concurrently() -> None:
    async def complete_all(base_url: str, count: int) -> list[Any]:
        async with openai.AsyncOpenAI(
            api_key="sk-test", base_url=base_url, max_retries=0, timeout=120
        ) as client:
            calls = [
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"request {number}"}]
                )
                for number in range(count)
            ]
            return await asyncio.gather(*calls)

    with FakeOpenAI(latency=1.0) as server:
        replies = asyncio.run(complete_all(server.base_url, 300))
        counters = stats(server.base_url)
    texts = [reply.choices[0].message.content for reply in replies]
    assert texts == [PREFIX + f"request {number}" for number in range(300)]
    assert counters["completions"] == 300
    assert counters["max_in_flight"] >= 200


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_line_prints_the_url_and_stops_on_signal(stop_signal: signal.Signals) -> None:
    argv = [sys.executable, "-m", "devtools.fake_openai", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--latency", "0.01", "--jitter", "0.005"]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert select.select([process.stdout], [], [], 15)[0], "no line within 15 s"
            line = process.stdout.readline()
            match = re.fullmatch(r"fake-openai listening on (http://127\.0\.0\.1:\d+/v1)\n", line)
            assert match, line
            with make_client(match[1]) as client:
                assert ask(client).choices[0].message.content == PREFIX + "Hello there"
            process.send_signal(stop_signal)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
