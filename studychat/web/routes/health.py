"""Probes for load balancers and orchestrators: GET /healthz and GET /readyz.

/healthz says the process answers HTTP and touches nothing else, so a Redis or
MongoDB outage never gets the web process restarted. /readyz says whether a chat
turn can go all the way through right now: Redis answers PING, MongoDB answers ping,
and at least one live worker serves the chat queue. The checks run at once, each on
its own short-timeout client, and the answer leaves by a deadline even when a server
accepts connections and never replies (a check still running then counts as down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait

import pymongo
from flask import Blueprint, jsonify
from redis import Redis

from studychat.chat.queue_state import read_queue_state
from studychat.web.services import services

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

# Seconds each check may take, and the answer's deadline: well inside the usual 5 s
# of a load balancer's probe.
CHECK_TIMEOUT_S = 2.0
DEADLINE_S = 2.5
OK, DOWN, TIMEOUT, NO_WORKER = "ok", "down", "timeout", "no worker"
# The worker check cannot tell while Redis is down; it is not named as a second fault.
UNKNOWN = "unknown"
CHECK_NAMES = ("redis", "mongodb", "worker")


@bp.get("/healthz")
def healthz():
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """200 when Redis, MongoDB and a chat worker are all up, else 503 naming what is not."""
    made = services()
    probe = probe_redis(made.settings.REDIS_URL, made.settings.REDIS_SSL_CERT_REQS)
    try:
        checks = run_checks(
            {
                "redis": lambda: check_redis(probe),
                "mongodb": lambda: check_mongodb(made.mongo),
                "worker": lambda: check_worker(probe),
            },
            DEADLINE_S,
        )
    finally:
        probe.close()
    if checks["redis"] != OK and checks["worker"] != OK:
        checks["worker"] = UNKNOWN
    down = [name for name in CHECK_NAMES if checks[name] not in (OK, UNKNOWN)]
    if all(state == OK for state in checks.values()):
        return jsonify(status="ready", checks=checks), 200
    logger.warning("not ready: %s", ", ".join(f"{name} {checks[name]}" for name in down))
    return jsonify(status="not ready", checks=checks, error=not_ready_message(down)), 503


def run_checks(checks: Mapping[str, Callable[[], str]], deadline_s: float) -> dict[str, str]:
    """Run every check at once; a check unfinished at the deadline is TIMEOUT."""
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(_guarded, check) for name, check in checks.items()}
        wait(futures.values(), timeout=deadline_s)
        return {
            name: future.result() if future.done() else TIMEOUT for name, future in futures.items()
        }
    finally:
        # A hung check ends by its own client timeout; the answer does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)


def _guarded(check: Callable[[], str]) -> str:
    """A check's state; any failure is DOWN (its detail goes to the log, never the answer)."""
    try:
        return check()
    except Exception as error:
        logger.info("readiness check failed: %s", type(error).__name__)
        return DOWN


def probe_redis(url: str, ssl_cert_reqs: str) -> Redis:
    """A Redis client for one probe, with timeouts shorter than the deadline."""
    tls = {"ssl_cert_reqs": ssl_cert_reqs} if url.startswith("rediss://") else {}
    return Redis.from_url(
        url,
        socket_connect_timeout=CHECK_TIMEOUT_S,
        socket_timeout=CHECK_TIMEOUT_S,
        retry_on_timeout=False,
        **tls,
    )


def check_redis(connection: Redis) -> str:
    """PING answered."""
    connection.ping()
    return OK


def check_mongodb(client: pymongo.MongoClient) -> str:
    """`ping` answered, server selection included, within CHECK_TIMEOUT_S."""
    with pymongo.timeout(CHECK_TIMEOUT_S):
        client.admin.command("ping")
    return OK


def check_worker(connection: Redis) -> str:
    """At least one registered worker of the chat queue is alive (its key not expired)."""
    return OK if read_queue_state(connection).workers_alive else NO_WORKER


def not_ready_message(down: list[str]) -> str:
    """A sentence naming what is down, e.g. "Not ready: redis, worker."."""
    return "Not ready: " + ", ".join(down) + "."
