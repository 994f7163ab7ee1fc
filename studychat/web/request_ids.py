"""The id of each web request: Heroku's X-Request-ID when it sends one, else a new one.

The id is kept on `flask.g` for the log lines of the request (logging_setup adds it to
each) and sent back in the X-Request-ID response header, so a participant's report,
the router's log and the app's log lines name the same request.
"""

from __future__ import annotations

import os
import re

from flask import Flask, Response, g, has_request_context, request, request_started

from studychat.logging_setup import set_context_source

HEADER = "X-Request-ID"
# Heroku sends a UUID; other proxies other tokens. Anything else (too long, spaces, quotes,
# control characters) is replaced, so a client cannot forge log content through it.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:+/=-]{1,200}")


def request_id_from(header: str | None) -> str:
    """The header's id when it is a plain token of at most 200 characters, else a new one.

    A new one is 128 random bits in 32 hex digits, as `uuid4().hex` looks but for its
    version digit: drawn without building a UUID, which cost six times as much, about
    1.5 % of a web process's CPU when every poll needs an id.
    """
    if header and _ACCEPTED.fullmatch(header):
        return header
    return os.urandom(16).hex()


def current_request_id() -> str | None:
    """The id of the request this thread is serving, or None outside a request."""
    if not has_request_context():
        return None
    return g.get("request_id")


def _assign(sender: Flask, **_: object) -> None:
    g.request_id = request_id_from(request.headers.get(HEADER))


def _echo(response: Response) -> Response:
    request_id = current_request_id()
    if request_id:
        response.headers[HEADER] = request_id
    return response


def install_request_ids(app: Flask) -> None:
    """Give each request of `app` an id before any before_request hook runs, and echo it."""
    # request_started fires before every before_request hook, the admin guard included.
    request_started.connect(_assign, app, weak=False)
    app.after_request(_echo)
    set_context_source("request_id", current_request_id)
