"""Driving the fake OpenAI-compatible upstream of the tests: faults, request log, counters."""

from __future__ import annotations

import json
import urllib.request

from redis import Redis

from devtools.servers import FakeOpenAIServer
from studychat.chat.task_queue import make_queue


def control(server: FakeOpenAIServer, payload: dict) -> dict:
    """Send a control command to the fake upstream."""
    url = server.base_url.removesuffix("/v1") + "/_control"
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read() or b"{}")


def upstream_requests(server: FakeOpenAIServer) -> list[dict]:
    """Every completion request the upstream received since its last reset."""
    url = server.base_url.removesuffix("/v1") + "/_requests"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())["requests"]


def upstream_stats(server: FakeOpenAIServer) -> dict:
    """Counters of the upstream: completions received, in flight now, most ever in flight."""
    url = server.base_url.removesuffix("/v1") + "/_stats"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def calls_in_flight(server: FakeOpenAIServer, connection: Redis) -> int:
    """Jobs of the test's own queue that are running and whose model call the upstream got.

    Counted on the test's own Redis, and from requests received since the upstream's
    reset, so that slow answers still owed to earlier tests' dead clients do not count.
    """
    started = make_queue(connection).started_job_registry.count
    return min(started, upstream_stats(server)["completions"])
