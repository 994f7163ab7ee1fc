"""A fake OpenAI chat completions server for tests, benchmarks and dry runs.

It is a real HTTP/1.1 server (stdlib asyncio, keep-alive) that the official `openai` client
can talk to. Every reply says plainly that it is not from GPT.

API, under the base URL ``http://HOST:PORT/v1``:

* ``POST /v1/chat/completions`` - plain or streamed (``"stream": true``) chat completions;
  401 unless the request carries ``Authorization: Bearer <anything>``.
* ``GET /v1/models`` - one model; no key needed, so it serves as a readiness probe.

Control, without authorisation, so that other processes see the same state:

* ``POST /_control`` with ``{"reset": true, "latency": s, "jitter": s, "faults": [...]}``, every
  key optional. ``reset`` (applied first) clears faults, the request log and the counters, and
  restores the command-line latency and jitter. Faults join a FIFO queue; each completion
  request takes the next one: ``{"status": 429, "retry_after": 1}``, ``{"status": 500}`` (any
  4xx/5xx; ``message``, ``type`` and ``code`` override the error body), ``{"hang": true}``
  (no answer until the client closes the connection), ``{"delay": s}`` (answer after ``s``
  seconds instead of the latency), ``{"drop": true}`` (close the connection, no answer).
* ``GET /_requests`` - ``{"requests": [{"body", "headers", "fault"}, ...]}``, the last 10,000
  completion requests.
* ``GET /_stats`` - ``{"completions", "in_flight", "max_in_flight", "connections"}``:
  completion requests, and the connections opened since the last reset.

Run it with ``python -m devtools.fake_openai --port 8099 [--latency 0.5] [--jitter 0.1]``, or
in-process with ``FakeOpenAI(latency=0.5).start()``, which returns the base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any

from devtools import event_loop

log = logging.getLogger(__name__)

Json = dict[str, Any]

COMPLETIONS_PATH = "/v1/chat/completions"
MODEL_ID = "fake-gpt"
REFUSES_MAX_TOKENS = ("o1", "o3", "o4", "gpt-5")
SYSTEM_FINGERPRINT = "fp_fake_openai"
REPLY_PREFIX = "[dry run] This reply is not from GPT. You said: "
IMAGE_NOTE = " (with an image)"
QUOTE_CHARS = 200
MAX_LOGGED_REQUESTS = 10_000
MAX_BODY_BYTES = 32 * 1024 * 1024
HEADER_LIMIT = 64 * 1024
BACKLOG = 2048
WORD = re.compile(r"\S+\s*")
FAULT_KINDS = ("status", "hang", "delay", "drop")
RATE_LIMITED = "Rate limit reached for requests. Please try again later."
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
FAULT_ERRORS = {  # status: (message, type, code) as OpenAI sends them
    429: (RATE_LIMITED, "requests", "rate_limit_exceeded"),
    500: (SERVER_ERROR, "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}
NO_API_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
UNSUPPORTED_MAX_TOKENS = (
    "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead."
)


class HttpError(Exception):
    """An error to answer with OpenAI's error body: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        self.headers = headers or {}

    def reply(self) -> Reply:
        """The error as a reply."""
        return Reply(self.status, self.body, self.headers)


@dataclass
class Request:
    """One HTTP request, body read."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    reader: asyncio.StreamReader = field(repr=False)


@dataclass
class Reply:
    """What to answer: a JSON body, or (when `events` is set) a chunked event stream."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: AsyncIterator[bytes] | None = None


Handler = Callable[[Request], Awaitable[Reply | None]]


class FakeOpenAI:
    """The fake server; `start()` runs it on its own event loop in a daemon thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        fast_loop: bool = False,
    ) -> None:
        self.host, self.port = host, port
        # uvloop (see devtools.event_loop) when it runs as a process of its own.
        self._fast_loop = fast_loop
        self._defaults = (latency, jitter)
        self._faults: deque[Json] = deque()
        self._log: deque[Json] = deque(maxlen=MAX_LOGGED_REQUESTS)
        self._in_flight = 0
        self._reset()
        self._routes: dict[str, dict[str, Handler]] = {
            COMPLETIONS_PATH: {"POST": self._chat_completions},
            "/v1/models": {"GET": self._models},
            "/_control": {"POST": self._control},
            "/_requests": {"GET": self._requests},
            "/_stats": {"GET": self._stats},
        }
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in /v1 (the port is known once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 10.0) -> str:
        """Serve in a daemon thread; return the base URL once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already started")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"fake-openai did not start on {self.base_url}") from self._error
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, close open connections and wait for the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        """The thread: run the server's event loop until stopped."""
        try:
            event_loop.run(self._serve(), fast=self._fast_loop)
        except BaseException as error:
            self._error = error
            log.exception("fake-openai failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        """Listen, report readiness, serve until `stop()`, then shut down."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, backlog=BACKLOG, limit=HEADER_LIMIT
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        log.info("fake-openai serving %s (latency %.3f s)", self.base_url, self._latency)
        await self._stopping.wait()
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the requests of one connection until either side closes it."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._connections += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("fake-openai: client went away")
        except asyncio.CancelledError:
            log.debug("fake-openai: connection closed on stop")  # re-raised, 3.11 logs noise
        except Exception:
            log.exception("fake-openai: connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read and answer one request; return whether the connection stays open."""
        try:
            request = await _read_request(reader, writer)
        except HttpError as error:
            await _write_reply(writer, error.reply(), keep_alive=False)
            return False
        if request is None:
            return False
        return await self._respond(request, writer)

    async def _respond(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Answer `request`, counting completion requests while in flight."""
        counted = request.method == "POST" and request.path == COMPLETIONS_PATH
        if counted:
            self._completions += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            reply = await self._reply_to(request)
            if reply is None:
                return False
            await _write_reply(writer, reply, request.keep_alive)
            return request.keep_alive
        finally:
            if counted:
                self._in_flight -= 1

    async def _reply_to(self, request: Request) -> Reply | None:
        """Route `request` to its handler; None means close without answering."""
        try:
            methods = self._routes.get(request.path)
            if methods is None:
                raise HttpError(404, f"Unknown request URL: {request.method} {request.path}.")
            handler = methods.get(request.method)
            if handler is None:
                allow = {"Allow": ", ".join(methods)}
                raise HttpError(405, f"Method {request.method} not allowed.", headers=allow)
            return await handler(request)
        except HttpError as error:
            return error.reply()
        except Exception:
            log.exception("fake-openai: failed on %s %s", request.method, request.path)
            return HttpError(500, "The fake server failed.", type_="server_error").reply()

    async def _chat_completions(self, request: Request) -> Reply | None:
        """POST /v1/chat/completions: apply the next fault, or answer after the latency."""
        body = _parse_json(request.body)
        fault = self._faults.popleft() if self._faults else None
        self._log.append({"body": body, "headers": request.headers, "fault": fault})
        if fault is not None and "delay" not in fault:
            return await _apply_fault(fault, request.reader)
        _check_auth(request.headers)
        body = _validated(body)
        delay = float(fault["delay"]) if fault is not None else self._latency_sample()
        text, finish = _truncated(_reply_text(body["messages"]), _token_cap(body))
        if body.get("stream"):
            events = _stream_events(body, text, finish, delay)
            return Reply(headers={"Cache-Control": "no-cache"}, events=events)
        await asyncio.sleep(delay)
        return Reply(body=_completion(body, text, finish))

    async def _models(self, request: Request) -> Reply:
        """GET /v1/models: the one model (no key needed: readiness probes call it)."""
        model = {"id": MODEL_ID, "object": "model", "created": 1700000000, "owned_by": "fake"}
        return Reply(body={"object": "list", "data": [model]})

    async def _control(self, request: Request) -> Reply:
        """POST /_control: reset, set latency and jitter, queue faults."""
        body = _parse_json(request.body)
        if not isinstance(body, dict):
            raise HttpError(400, "Expected a JSON object.")
        faults = _checked_faults(body.get("faults", []))
        latency, jitter = _seconds(body, "latency"), _seconds(body, "jitter")
        if body.get("reset"):
            self._reset()
        if latency is not None:
            self._latency = latency
        if jitter is not None:
            self._jitter = jitter
        self._faults.extend(faults)
        state = {"latency": self._latency, "jitter": self._jitter, "faults": len(self._faults)}
        return Reply(body=state)

    async def _requests(self, request: Request) -> Reply:
        """GET /_requests: the completion requests received since the last reset."""
        return Reply(body={"requests": list(self._log)})

    async def _stats(self, request: Request) -> Reply:
        """GET /_stats: completion requests received, in flight, at most in flight; connections."""
        stats = {"completions": self._completions, "in_flight": self._in_flight}
        return Reply(
            body={**stats, "max_in_flight": self._max_in_flight, "connections": self._connections}
        )

    def _reset(self) -> None:
        """Clear faults, the request log and counters; restore the initial latency."""
        self._latency, self._jitter = self._defaults
        self._faults.clear()
        self._log.clear()
        self._completions = 0
        self._connections = 0
        self._max_in_flight = self._in_flight

    def _latency_sample(self) -> float:
        """The latency of one answer: the latency plus or minus up to the jitter."""
        return max(0.0, self._latency + random.uniform(-self._jitter, self._jitter))


# HTTP/1.1


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Request | None:
    """Read the next request, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "Request header fields too large.") from None
    method, target, version, headers = _parse_head(head)
    body = await _read_body(reader, writer, headers)
    path = target.split("?", 1)[0]
    return Request(method, path, headers, body, _keep_alive(version, headers), reader)


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Method, target, version and lowercased headers of a request head."""
    request_line, *lines = head.decode("latin-1").strip().split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "Malformed HTTP request line.")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise HttpError(400, "Malformed HTTP header line.")
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


async def _read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> bytes:
    """The request body, as long as its Content-Length says."""
    if "transfer-encoding" in headers:
        raise HttpError(411, "Send the request body with a Content-Length.")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "Invalid Content-Length.") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise HttpError(413, f"The request body exceeds {MAX_BODY_BYTES} bytes.")
    if length and headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return await reader.readexactly(length)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    """Whether the client wants the connection kept open after this request."""
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def _write_reply(writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool) -> None:
    """Send `reply`: JSON with a Content-Length, or events with chunked encoding."""
    headers = {
        "x-request-id": "req_" + secrets.token_hex(12),
        "Connection": "keep-alive" if keep_alive else "close",
        **reply.headers,
    }
    if reply.events is None:
        data = json.dumps(reply.body).encode()
        headers |= {"Content-Type": "application/json", "Content-Length": str(len(data))}
        writer.write(_head(reply.status, headers) + data)
        await writer.drain()
        return
    headers |= {"Content-Type": "text/event-stream; charset=utf-8", "Transfer-Encoding": "chunked"}
    writer.write(_head(reply.status, headers))
    async for event in reply.events:
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def _head(status: int, headers: dict[str, str]) -> bytes:
    """A response's status line and headers."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{key}: {value}" for key, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_json(data: bytes) -> Any:
    """The decoded JSON body, or None when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        return None


# Faults


def _checked_faults(faults: Any) -> list[Json]:
    """The faults of a control request, or a 400 when one is malformed."""
    if not isinstance(faults, list) or not all(isinstance(fault, dict) for fault in faults):
        raise HttpError(400, "'faults' must be a list of objects.", param="faults")
    for fault in faults:
        kinds = [kind for kind in FAULT_KINDS if kind in fault]
        if len(kinds) != 1 or not _fault_value_ok(kinds[0], fault[kinds[0]]):
            message = f"Bad fault {fault!r}: give one of status (400-599), hang, delay, drop."
            raise HttpError(400, message, param="faults")
        if "retry_after" in fault and not _is_seconds(fault["retry_after"]):
            raise HttpError(400, f"Bad retry_after in fault {fault!r}.", param="faults")
    return faults


def _fault_value_ok(kind: str, value: Any) -> bool:
    """Whether `value` is valid for a fault of `kind`."""
    if kind == "status":
        return isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599
    if kind == "delay":
        return _is_seconds(value)
    return value is True


def _seconds(body: Json, name: str) -> float | None:
    """The duration `name` of a control request, if given, or a 400 when invalid."""
    value = body.get(name)
    if value is None:
        return None
    if not _is_seconds(value):
        raise HttpError(400, f"'{name}' must be a number of seconds >= 0.", param=name)
    return float(value)


def _is_seconds(value: Any) -> bool:
    """Whether `value` is a non-negative number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


async def _apply_fault(fault: Json, reader: asyncio.StreamReader) -> Reply | None:
    """Answer as `fault` says: None closes the connection without an answer."""
    if fault.get("drop"):
        return None
    if fault.get("hang"):
        while await reader.read(65536):  # discard anything until the client closes
            pass
        return None
    status = int(fault["status"])
    default_type = "server_error" if status >= 500 else "invalid_request_error"
    default = (f"Injected HTTP {status}.", default_type, None)
    message, type_, code = FAULT_ERRORS.get(status, default)
    headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
    message, type_ = fault.get("message", message), fault.get("type", type_)
    raise HttpError(status, message, type_=type_, code=fault.get("code", code), headers=headers)


# Chat completions


def _check_auth(headers: dict[str, str]) -> None:
    """401 unless the request carries `Authorization: Bearer <something>`."""
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HttpError(401, NO_API_KEY)


def _validated(body: Any) -> Json:
    """The request body, or a 400 shaped like OpenAI's when OpenAI would refuse it."""
    if not isinstance(body, dict):
        raise HttpError(400, "We could not parse the JSON body of your request.")
    for name in ("model", "messages"):
        if name not in body:
            message = f"Missing required parameter: '{name}'."
            raise HttpError(400, message, param=name, code="missing_required_parameter")
    if not isinstance(body["model"], str) or not body["model"]:
        raise HttpError(400, "Invalid 'model': expected a model name.", param="model")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        message = "Invalid 'messages': expected a non-empty array of messages."
        raise HttpError(400, message, param="messages", code="invalid_value")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        message = "Invalid 'messages': each message needs a 'role'."
        raise HttpError(400, message, param="messages", code="invalid_value")
    _check_token_caps(body)
    return body


def _check_token_caps(body: Json) -> None:
    """400 for `max_tokens` on models that refuse it, and for caps that are not >= 1."""
    if body.get("max_tokens") is not None and body["model"].startswith(REFUSES_MAX_TOKENS):
        raise HttpError(
            400, UNSUPPORTED_MAX_TOKENS, param="max_tokens", code="unsupported_parameter"
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise HttpError(400, f"Invalid type for '{name}'.", param=name, code="invalid_type")
        if value is not None and value < 1:
            message = f"Invalid '{name}': expected a value >= 1, but got {value} instead."
            raise HttpError(400, message, param=name, code="integer_below_min_value")


def _token_cap(body: Json) -> int | None:
    """The requested cap on reply tokens (words here), if any."""
    return body.get("max_completion_tokens") or body.get("max_tokens")


def _content_text(content: Any) -> tuple[str, bool]:
    """The text of a message's content (string or parts), and whether it has an image."""
    if isinstance(content, str):
        return content, False
    if not isinstance(content, list):
        return "", False
    parts = [part for part in content if isinstance(part, dict)]
    texts = [str(part.get("text") or "") for part in parts if part.get("type") == "text"]
    has_image = any(part.get("type") == "image_url" for part in parts)
    return " ".join(texts), has_image


def _reply_text(messages: list[Json]) -> str:
    """The dry-run reply, quoting the start of the last user message."""
    users = [message for message in messages if message.get("role") == "user"]
    text, has_image = _content_text(users[-1].get("content")) if users else ("", False)
    return REPLY_PREFIX + text[:QUOTE_CHARS] + (IMAGE_NOTE if has_image else "")


def _truncated(text: str, cap: int | None) -> tuple[str, str]:
    """`text` cut to at most `cap` words, and the finish reason ("length" when cut)."""
    words = WORD.findall(text)
    if cap is None or len(words) <= cap:
        return text, "stop"
    return "".join(words[:cap]).rstrip(), "length"


def _usage(body: Json, text: str) -> Json:
    """Token counts, one token a word: deterministic, roughly right."""
    prompt = sum(len(_content_text(m.get("content"))[0].split()) for m in body["messages"])
    completion = len(WORD.findall(text))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _new_id() -> str:
    """A completion id like OpenAI's."""
    return "chatcmpl-" + secrets.token_urlsafe(21).replace("-", "x").replace("_", "y")


def _completion(body: Json, text: str, finish: str) -> Json:
    """A `chat.completion` object answering `body` with `text`."""
    message = {"role": "assistant", "content": text, "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return {
        "id": _new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [choice],
        "usage": _usage(body, text),
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


async def _stream_events(
    body: Json, text: str, finish: str, latency: float
) -> AsyncIterator[bytes]:
    """Server-sent events of a streamed completion, the latency spread over the pieces."""
    words = WORD.findall(text)
    chunks = _stream_chunks(body, words, finish)
    yield _event(next(chunks))
    for _ in words:
        await asyncio.sleep(latency / len(words))
        yield _event(next(chunks))
    for chunk in chunks:
        yield _event(chunk)
    yield b"data: [DONE]\n\n"


def _stream_chunks(body: Json, words: list[str], finish: str) -> Iterator[Json]:
    """The `chat.completion.chunk` objects: role, one per word, finish, then usage if asked."""
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    base = {
        "id": _new_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": SYSTEM_FINGERPRINT,
    } | ({"usage": None} if with_usage else {})
    deltas = [{"role": "assistant", "content": ""}, *({"content": word} for word in words), {}]
    for index, delta in enumerate(deltas):
        reason = finish if index == len(deltas) - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        yield base | {"choices": [choice]}
    if with_usage:
        yield base | {"choices": [], "usage": _usage(body, "".join(words))}


def _event(data: Json) -> bytes:
    """One server-sent event carrying `data` as JSON."""
    return b"data: " + json.dumps(data).encode() + b"\n\n"


# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="latency varies by +/- this")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, after printing the base URL on one line."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    # Blocked here and in the server thread, the signals wait for sigwait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = FakeOpenAI(
        args.host, args.port, latency=args.latency, jitter=args.jitter, fast_loop=True
    )
    print(f"fake-openai listening on {server.start()}", flush=True)
    received = signal.sigwait(stop_signals)
    log.info("fake-openai: %s received, stopping", signal.Signals(received).name)
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
