"""Building upstream requests (pure) and calling a real OpenAI-compatible server."""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from studychat.chat import llm_client
from studychat.exceptions import ModelCallFailed
from studychat.settings import load_settings
from tests.support.upstream import control, upstream_stats

SETTINGS = {"OPENAI_API_KEY": "sk-test", "LLM_TIMEOUT_S": 5.0, "LLM_MAX_RETRIES": 1}
REQUIRED = {"GPT_VERSION": "m", "FRONTEND_URL": "https://a.org", "DATABASE_URL": "mongodb://x"}
REQUIRED |= {"REDIS_URL": "redis://x", "PROLIFIC_CODE": "C", "STUDY_TOKEN_BUDGET": "none"}


def test_plain_message_passes_through():
    message = {"role": "user", "content": "hi"}
    assert llm_client.to_openai_message(message) == message


def test_image_message_becomes_parts():
    message = {"role": "user", "content": "look", "image": "data:image/png;base64,AAAA"}
    assert llm_client.to_openai_message(message)["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
    ]


@pytest.mark.parametrize(
    ("model", "parameter"),
    [
        ("gpt-4o-mini", "max_tokens"),
        ("gpt-4.1", "max_tokens"),
        ("o1-mini", "max_completion_tokens"),
        ("o3", "max_completion_tokens"),
        ("gpt-5-mini", "max_completion_tokens"),
    ],
)
def test_token_cap_parameter_by_model(model, parameter):
    request = llm_client.build_request([{"role": "user", "content": "x"}], model, 42)
    assert request[parameter] == 42
    assert request["model"] == model


def client_for(upstream, **overrides) -> openai.OpenAI:
    settings = {**REQUIRED, **SETTINGS, "OPENAI_BASE_URL": upstream.base_url, **overrides}
    return llm_client.make_client(load_settings(settings))


def test_reasoning_model_gets_its_cap_accepted(upstream):
    request = llm_client.build_request([{"role": "user", "content": "x"}], "gpt-5-mini", 50)
    completion = llm_client.complete(client_for(upstream), request)
    assert json.loads(completion.raw_json)["model"] == "gpt-5-mini"
    assert completion.attempts == 1


def test_raw_body_is_kept_byte_for_byte(upstream):
    request = llm_client.build_request([{"role": "user", "content": "x"}], "gpt-4o-mini", 50)
    completion = llm_client.complete(client_for(upstream), request)
    url = upstream.base_url + "/chat/completions"
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    sent = urllib.request.Request(url, data=json.dumps(request).encode(), headers=headers)
    with urllib.request.urlopen(sent, timeout=5) as answer:
        direct = answer.read().decode()
    assert completion.raw_json.startswith('{"id"')
    assert list(json.loads(completion.raw_json)) == list(json.loads(direct))


def test_rate_limit_failure_is_a_plain_sentence(upstream):
    control(upstream, {"faults": [{"status": 429, "retry_after": 0}] * 2})
    request = llm_client.build_request([{"role": "user", "content": "x"}], "gpt-4o-mini", 50)
    with pytest.raises(ModelCallFailed) as raised:
        llm_client.complete(client_for(upstream), request)
    assert raised.value.message == "The model service rate-limited this request after 2 attempts."


def test_retry_counts_attempts(upstream):
    control(upstream, {"faults": [{"status": 503}]})
    request = llm_client.build_request([{"role": "user", "content": "x"}], "gpt-4o-mini", 50)
    assert llm_client.complete(client_for(upstream), request).attempts == 2


def test_calls_one_after_another_reuse_one_connection(upstream):
    settings = {**REQUIRED, **SETTINGS, "OPENAI_BASE_URL": upstream.base_url}
    clients = llm_client.make_clients(load_settings(settings))
    request = llm_client.build_request([{"role": "user", "content": "hi"}], "gpt-4o-mini", 50)
    opened = upstream_stats(upstream)["connections"]
    for _ in range(5):
        with clients.client() as client:
            assert llm_client.complete(client, request).attempts == 1
    # One connection for the five calls, and one for this test's request for the figures.
    assert upstream_stats(upstream)["connections"] - opened == 2
    assert clients.made == 1
