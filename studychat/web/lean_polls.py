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
- the first poll from an Origin is asked of the app without its wait: the app's answer
  teaches the headers, and a long poll it says "processing" to goes on waiting here
  (else a study's first long polls, all sent before any answer exists, would all wait
  in Flask); any other answer of the app's is the poll's own, since the job is over;
- it counts the poll in the request metrics as the app would, once.
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
from studychat.web.request_metrics import UNCOUNTED, count_request
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
        poll = self._poll_of(environ)
        if poll is None:
            return self.app(environ, start_response)
        origin = environ.get("HTTP_ORIGIN")
        if origin not in self.learned:
            return self._first_from(origin, environ, start_response, poll, started)
        return self._lean(environ, start_response, origin, poll, started)

    def _poll_of(self, environ: dict[str, Any]) -> CheckResponseRequest | None:
        """The poll a JSON POST /check_response asks (its body put back for the app); else None."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != PATH:
            return None
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != JSON:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if not 0 < length <= MAX_BODY_BYTES:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            return CheckResponseRequest.model_validate(json.loads(body))
        # JSONDecodeError and UnicodeError are ValueErrors; RecursionError: absurd nesting.
        except (ValueError, ValidationError, RecursionError):
            return None

    def _lean(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        origin: str | None,
        poll: CheckResponseRequest,
        started: float,
    ) -> Iterable[bytes]:
        """The poll answered here when it gets a 200; by the app otherwise."""
        answer = self._answer(poll)
        if answer is None:
            return self.app(environ, start_response)
        status, headers = self.learned[origin]
        sized = [
            (name, str(len(answer)) if name == "Content-Length" else value)
            for name, value in headers
        ]
        request_id = request_id_from(environ.get(REQUEST_ID_KEY))
        return self._send(
            environ,
            start_response,
            status,
            [*sized, (REQUEST_ID_HEADER, request_id)],
            answer,
            started,
        )

    def _answer(self, poll: CheckResponseRequest) -> bytes | None:
        """The body the app would answer 200 with ("processing", or the answer); else None."""
        try:
            state = poll_outcome(self.connection, self.updates, poll.jobId, poll.wait)
        except Exception:  # the app answers a Redis error as it always has
            return None
        if state is None:
            return self.processing
        # A failed or unknown job, or a failure's 502, is the app's to answer.
        return state.body if state.status_code == 200 else None

    def _first_from(
        self,
        origin: str | None,
        environ: dict[str, Any],
        start_response: StartResponse,
        poll: CheckResponseRequest,
        started: float,
    ) -> Iterable[bytes]:
        """The first poll from `origin`: the app answers it at once, and teaches its headers.

        Asked without `wait`, the app answers at once; if it says "processing" to a long
        poll, the wait goes on here. Otherwise the job is over and the app's answer is the
        long poll's too. So the first long polls of a study do not all wait in Flask.
        """
        if len(self.learned) >= MAX_ORIGINS:
            return self.app(environ, start_response)
        status, headers, body = self._ask_app_at_once(environ, poll.jobId)
        self._learn(origin, status, headers)
        if poll.wait and body == self.processing and origin in self.learned:
            return self._lean(environ, start_response, origin, poll, started)
        return self._send(environ, start_response, status, headers, body, started)

    def _ask_app_at_once(self, environ: dict[str, Any], job_id: str) -> tuple[str, Headers, bytes]:
        """The app's answer to this poll asked without `wait`; left out of its metrics."""
        body = json.dumps({"jobId": job_id}).encode()
        asked = {
            **environ,
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
            UNCOUNTED: True,
        }
        seen: list[Any] = []

        def recording_start_response(status: str, headers: Headers, *args: Any) -> Any:
            seen[:] = [status, headers]

        chunks = self.app(asked, recording_start_response)
        try:
            answer = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return seen[0], seen[1], answer

    def _send(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        status: str,
        headers: Headers,
        body: bytes,
        started: float,
    ) -> Iterable[bytes]:
        """Send an answer the app did not count, counting it as the app would."""
        if body == self.processing:
            mark_pending_poll(environ)
        start_response(status, headers)
        count_request("POST", PATH, status.partition(" ")[0], time.perf_counter() - started)
        return [body]

    def _learn(self, origin: str | None, status: str, headers: Headers) -> None:
        """Keep the status and headers of a 200 JSON answer for `origin`."""
        kept = [(name, value) for name, value in headers if name != REQUEST_ID_HEADER]
        if status.startswith("200 ") and ("Content-Type", JSON) in kept:
            self.learned[origin] = (status, kept)
