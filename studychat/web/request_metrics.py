"""Prometheus metrics of the web's own requests: count by route and status, and latency.

gunicorn runs several processes per machine and a scrape reaches one of them, so with
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it to a fresh directory of its own)
each process writes its counts to files there and a scrape sums them all
(prometheus_client's multiprocess mode). Without it (tests, `flask run`) the counts of
the one process are reported. They cover one machine: with several web dynos, each
scrape reports the dyno that answered it. Chat job metrics do not depend on this: they
live in Redis (job_metrics.py).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from flask import Flask, Response, g, request, request_started
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
)

# The `_created` series (when each label set first appeared) double the output for nothing
# a dashboard uses; multiprocess mode omits them anyway.
disable_created_metrics()

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # one label for every unknown path, so a scan cannot explode the series
# The WSGI environ key of a request made on the app's behalf, which whoever made it counts
# (lean_polls.py asks the app a poll's answer once, then answers the poll itself).
UNCOUNTED = "studychat.uncounted"

# Not registered anywhere: each scrape builds its own registry (scrape_registry).
REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route and status code.",
    ["method", "route", "status"],
    registry=None,
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Seconds from the request's arrival in the app to its answer, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)


def multiprocess_dir() -> str | None:
    """The directory multiprocess mode shares, when this process runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry() -> CollectorRegistry:
    """A registry holding the request metrics of every process of this machine's web."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    return registry


def count_request(method: str, route: str, status: str, seconds: float | None) -> None:
    """Count one answered request, and time it when `seconds` is known."""
    _request_count(method, route, status).inc()
    if seconds is not None:
        _request_latency(method, route).observe(seconds)


# A label set's child, kept: `labels()` takes a lock and checks every label on each call,
# about 2 % of a web process's CPU when it ran per request. The keys are those
# prometheus_client keeps a child for anyway, so the caches grow no further than it does.
@functools.cache
def _request_count(method: str, route: str, status: str) -> Any:
    return REQUESTS.labels(method, route, status)


@functools.cache
def _request_latency(method: str, route: str) -> Any:
    return LATENCY.labels(method, route)


def _start_clock(sender: Flask, **_: object) -> None:
    g.request_clock = time.perf_counter()


def _observe(response: Response) -> Response:
    if request.environ.get(UNCOUNTED):
        return response
    started = g.get("request_clock")
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    seconds = None if started is None else time.perf_counter() - started
    count_request(request.method, route, str(response.status_code), seconds)
    return response


def install_request_metrics(app: Flask) -> None:
    """Count and time every request `app` answers."""
    request_started.connect(_start_clock, app, weak=False)
    app.after_request(_observe)
