"""A lean path for the web's commonest requests: polls answered 200, long polls included.

At 0.5 s polling and 2 s answers, five in six requests are POST /check_response polls:
"processing", then the answer; on the long poll, every other request is one. Through
Flask's whole pipeline (request context, hooks, CORS, limiter filter, error handlers)
each cost several times the one Redis round trip it needs. This WSGI middleware answers
exactly those polls itself and hands every other request to the app, untouched:

- it answers only a poll with a JSON body of a valid jobId (and `wait`, if any) whose
  job exists and has not failed, as the app does (web/polls.py decides for both):
  "processing" while it has no outcome within the wait, then its answer with status
  200, a paced condition's answer once released;
- anything else (another route, a body the app would refuse, a failed or unknown job,
  a Redis error) goes to the app, which answers it as it always has;
- its answer is the app's own: the status and headers the app gave the first 200 poll
  from the same Origin (CORS and security headers depend on nothing else; "processing"
  and an answer carry the same ones) are learned and replayed, with the body's length
  and a request id of its own as the app would give them; an answer is marked
  delivered as the app marks it;
- it counts the poll in the request metrics as the app would.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, jsonify
from pydantic import ValidationError
from redis import Redis

from studychat.web.access_log import mark_pending_poll
from studychat.web.job_updates import JobUpdates
from studychat.web.polls import poll_outcome
from studychat.web.request_ids import HEADER as REQUEST_ID_HEADER
from studychat.web.request_ids import request_id_from
from studychat.web.request_metrics import LATENCY, REQUESTS
from studychat.web.schemas import CheckResponseRequest

PATH = "/check_response"
# Far above any real poll body ({"jobId": "<32 hex>"}); a larger one goes to the app.
MAX_BODY_BYTES = 1024
# Answers are learned per Origin; a flood of invented origins stops learning here.
MAX_ORIGINS = 64
PROCESSING = {"processing": True}
JSON = "application/json"
REQUEST_ID_KEY = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Headers = list[tuple[str, str]]


def install_lean_polls(app: Flask, connection: Redis, updates: JobUpdates) -> None:
    """Put the lean path in front of `app` (outermost: a poll it answers costs nothing more)."""
    with app.app_context():
        processing = jsonify(**PROCESSING).get_data()  # the very bytes the app answers
    app.wsgi_app = LeanPolls(app.wsgi_app, connection, updates, processing)  # type: ignore[method-assign]


class LeanPolls:
    """WSGI middleware: answers polls that get a 200 from Redis, everything else via `app`."""

    def __init__(
        self, app: WsgiApp, connection: Redis, updates: JobUpdates, processing: bytes
    ) -> None:
        self.app = app
        self.connection = connection
        self.updates = updates
        # The app's body of a "processing" answer.
        self.processing = processing
        # Origin header (or None) -> (status line, headers without the request id).
        self.learned: dict[str | None, tuple[str, Headers]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer a poll that gets a 200 here; pass anything else to the app."""
        started = time.perf_counter()
        body = self._poll_body(environ)
        if body is None:
            return self.app(environ, start_response)
        origin = environ.get("HTTP_ORIGIN")
        if origin in self.learned:
            answer = self._answer(body)
            if answer is not None:
                return self._replay(environ, start_response, origin, answer, started)
        return self._through_app(environ, start_response, origin)

    def _poll_body(self, environ: dict[str, Any]) -> bytes | None:
        """The body of a JSON POST /check_response, put back for the app; else None."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH:
            return None
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY_BYTES:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def _answer(self, body: bytes) -> bytes | None:
        """The body the app would answer 200 with ("processing", or the answer); else None."""
        try:
            poll = CheckResponseRequest.model_validate(json.loads(body))
        # JSONDecodeError and UnicodeError are ValueErrors; RecursionError: absurd nesting.
        except (ValueError, ValidationError, RecursionError):
            return None
        try:
            state = poll_outcome(self.connection, self.updates, poll.jobId, poll.wait)
        except Exception:  # the app answers a Redis error as it always has
            return None
        if state is None:
            return self.processing
        # A failed or unknown job, or a failure's 502, is the app's to answer.
        return state.body if state.status_code == 200 else None

    def _replay(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        origin: str | None,
        body: bytes,
        started: float,
    ) -> Iterable[bytes]:
        status, headers = self.learned[origin]
        if body == self.processing:
            mark_pending_poll(environ)
        request_id = request_id_from(environ.get(REQUEST_ID_KEY))
        sized = [
            (name, str(len(body)) if name == "Content-Length" else value) for name, value in headers
        ]
        start_response(status, [*sized, (REQUEST_ID_HEADER, request_id)])
        REQUESTS.labels("POST", PATH, status.partition(" ")[0]).inc()
        LATENCY.labels("POST", PATH).observe(time.perf_counter() - started)
        return [body]

    def _through_app(
        self, environ: dict[str, Any], start_response: StartResponse, origin: str | None
    ) -> Iterable[bytes]:
        """The app's answer, learned when it is the first 200 answer for `origin`."""
        if origin in self.learned or len(self.learned) >= MAX_ORIGINS:
            return self.app(environ, start_response)
        seen: list[Any] = []

        def recording_start_response(status: str, headers: Headers, *args: Any) -> Any:
            seen[:] = [status, headers]
            return start_response(status, headers, *args)

        chunks = self.app(environ, recording_start_response)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        self._learn(origin, seen)
        return [body]

    def _learn(self, origin: str | None, seen: list[Any]) -> None:
        """Keep the status and headers of a 200 poll answer for `origin` (JSON, as always)."""
        if not seen or not seen[0].startswith("200 "):
            return
        headers = [(name, value) for name, value in seen[1] if name != REQUEST_ID_HEADER]
        if ("Content-Type", JSON) not in headers:
            return
        self.learned[origin] = (seen[0], headers)
