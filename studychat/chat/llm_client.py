"""Building chat requests for the model and calling it through the `openai` client."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx2 as httpx
import openai
from openai import DEFAULT_CONNECTION_LIMITS, RequestOptions

from studychat.chat.model_clients import ModelClients
from studychat.exceptions import ModelCallFailed
from studychat.settings import Settings

CHAT_COMPLETIONS = "/chat/completions"
# The header in which the client tells the server how many times it retried this request:
# the attempts of a call are read from its last request, never worked out again here.
RETRY_COUNT = "x-stainless-retry-count"
STOPPED_MID_ANSWER = "The model service stopped in the middle of its answer."
# Reasoning models refuse `max_tokens` and take `max_completion_tokens` instead.
REFUSES_MAX_TOKENS = ("o1", "o3", "o4", "gpt-5")


@dataclass(frozen=True)
class Completion:
    """A finished model call: the body exactly as the upstream sent it, and its cost."""

    raw_json: str
    usage: dict[str, Any]
    model: str
    attempts: int


def token_limit_parameter(model: str) -> str:
    """The name under which `model` accepts the output cap."""
    return "max_completion_tokens" if model.startswith(REFUSES_MAX_TOKENS) else "max_tokens"


def to_openai_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a frontend message; one with an image becomes text and image content parts."""
    image = message.get("image")
    if not image:
        return {"role": message["role"], "content": message["content"]}
    parts = [
        {"type": "text", "text": message["content"]},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
    ]
    return {"role": message["role"], "content": parts}


def build_request(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    token_limit: int,
    options: Mapping[str, Any] | None = None,
) -> dict:
    """The keyword arguments of the upstream call; the client chooses neither model nor cap.

    `options` are a study condition's sampling parameters (temperature, top_p, seed).
    """
    return {
        "model": model,
        "messages": [to_openai_message(message) for message in messages],
        token_limit_parameter(model): token_limit,
        **(options or {}),
    }


def make_clients(settings: Settings) -> ModelClients:
    """The worker's model clients, one per call in flight (see model_clients).

    They share one TLS context: each would otherwise load the certificate store, about
    30 ms of CPU and 1 MB apiece.
    """
    return ModelClients(partial(make_client, settings, httpx.create_ssl_context()))


def make_client(settings: Settings, tls: ssl.SSLContext | None = None) -> openai.OpenAI:
    """An OpenAI client for one call at a time, bounded by the timeout and retry settings."""
    http_client = openai.DefaultHttpxClient(limits=ONE_CONNECTION, verify=tls or True)
    return openai.OpenAI(**client_options(settings), http_client=http_client)


# A client for one call at a time keeps one connection alive between calls, for as long
# as the SDK keeps one.
ONE_CONNECTION = httpx.Limits(
    max_connections=DEFAULT_CONNECTION_LIMITS.max_connections,
    max_keepalive_connections=1,
    keepalive_expiry=DEFAULT_CONNECTION_LIMITS.keepalive_expiry,
)


def client_options(settings: Settings) -> dict[str, Any]:
    """A model client's key, address, timeout and retries, from the settings."""
    return {
        "api_key": settings.OPENAI_API_KEY,
        "base_url": settings.OPENAI_BASE_URL or None,
        "timeout": settings.LLM_TIMEOUT_S,
        "max_retries": settings.LLM_MAX_RETRIES,
    }


def complete(
    client: openai.OpenAI, request: dict[str, Any], call_id: str | None = None
) -> Completion:
    """Call the model; raise ModelCallFailed with a sentence a participant may see.

    `call_id` (a job's id) is the call's idempotency key, the same for its every retry.
    Without it the client draws a uuid4 per call (2 % of a worker's CPU) for a key it
    sends nowhere: OpenAI's API takes no idempotency header.
    """
    try:
        # The client's generic POST (its retries, timeouts and errors) with the request as
        # plain JSON: `chat.completions.create` first rebuilds every message through its
        # TypedDict transforms, which cost a worker three times the CPU of the call itself.
        # `cast_to=httpx.Response` hands back the response as received (the SDK's way
        # to call any endpoint), so the body is stored byte for byte.
        options: RequestOptions = {"idempotency_key": call_id} if call_id else {}
        response = client.post(
            CHAT_COMPLETIONS, body=request, cast_to=httpx.Response, options=options
        )
    except openai.APIError as error:
        attempts = attempts_made(error.request)
        raise ModelCallFailed(describe_failure(error, attempts), attempts) from error
    body = response.text
    parsed = json.loads(body)
    return Completion(
        raw_json=body,
        usage=parsed.get("usage") or {},
        model=parsed.get("model", request["model"]),
        attempts=attempts_made(response.request),
    )


def complete_streaming(
    client: openai.OpenAI, request: dict[str, Any], on_delta: Callable[[str], None]
) -> Completion:
    """Call the model streaming, hand each delta of text to `on_delta`, return the whole.

    The chunks are assembled into the chat.completion object the same call without
    streaming returns, so polling clients see the same shape either way.
    """
    options = {"stream": True, "stream_options": {"include_usage": True}}
    try:
        # The request is plain JSON built by build_request, not the SDK's TypedDicts.
        raw = client.chat.completions.with_raw_response.create(**request, **options)  # type: ignore[call-overload]
        assembled = assemble(raw.parse(), on_delta)
    except openai.APIError as error:
        attempts = attempts_made(error.request)
        raise ModelCallFailed(describe_failure(error, attempts), attempts) from error
    except httpx.HTTPError as error:
        raise ModelCallFailed(STOPPED_MID_ANSWER, 1) from error
    return Completion(
        raw_json=json.dumps(assembled, ensure_ascii=False, separators=(",", ":")),
        usage=assembled["usage"] or {},
        model=assembled["model"],
        attempts=raw.retries_taken + 1,
    )


def assemble(chunks: Iterable[Any], on_delta: Callable[[str], None]) -> dict[str, Any]:
    """Join streamed chunks into a chat.completion object, passing on each delta."""
    first, texts, finish, usage = None, [], None, None
    for chunk in chunks:
        first = first or chunk
        usage = chunk.usage.model_dump() if chunk.usage else usage
        for choice in chunk.choices[:1]:
            finish = choice.finish_reason or finish
            if choice.delta.content:
                texts.append(choice.delta.content)
                on_delta(choice.delta.content)
    if first is None:
        raise ModelCallFailed(STOPPED_MID_ANSWER, 1)
    message = {"role": "assistant", "content": "".join(texts), "refusal": None}
    return {
        "id": first.id,
        "object": "chat.completion",
        "created": first.created,
        "model": first.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "system_fingerprint": first.system_fingerprint,
    }


def attempts_made(last_request: httpx.Request) -> int:
    """How many calls the client made, as its last request says."""
    return int(last_request.headers.get(RETRY_COUNT, "0")) + 1


def describe_failure(error: openai.APIError, attempts: int) -> str:
    """A sentence saying what went wrong upstream, with no upstream text in it."""
    if isinstance(error, openai.RateLimitError):
        return f"The model service rate-limited this request after {attempts} attempts."
    if isinstance(error, openai.APITimeoutError):
        return f"The model service did not answer in time after {attempts} attempts."
    if isinstance(error, openai.APIConnectionError):
        return f"The model service could not be reached after {attempts} attempts."
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return "The model service refused the study's API key; the research team must check it."
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return f"The model service failed (HTTP {error.status_code}) after {attempts} attempts."
    status = getattr(error, "status_code", "error")
    return f"The model service refused this request (HTTP {status})."
