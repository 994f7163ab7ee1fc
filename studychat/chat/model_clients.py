"""The worker's model clients: one call at a time each, the most recently used first.

httpcore walks its whole connection pool under the pool's lock whenever a request starts
or ends, probing the socket of every idle connection on the way. With one pool for
hundreds of calls in flight that walk cost the worker more than the rest of the call;
with pools of 64 it was still about a tenth of the worker's CPU per answer. So each call
takes a client (and its single connection) that no other call is using.

The most recently returned client is handed out first: its connection is the likeliest
to be open still (the SDK keeps an idle one for 5 s). A worker answering a few calls a
second keeps reusing one or two connections, where handing clients out in turn would
open one per call: against OpenAI, a TLS handshake each. Clients are made when calls
need them, so there are never more than the most calls ever in flight at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import openai


class ModelClients:
    """Model clients lent to one call at a time, the most recently returned first."""

    def __init__(self, make: Callable[[], openai.OpenAI]) -> None:
        self._make = make
        self._idle: list[openai.OpenAI] = []
        self._lock = threading.Lock()
        self.made = 0

    @contextmanager
    def client(self) -> Iterator[openai.OpenAI]:
        """A client for one call, returned when the block ends."""
        client = self._take()
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def _take(self) -> openai.OpenAI:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.made += 1
        return self._make()
