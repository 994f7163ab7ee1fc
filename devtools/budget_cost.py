"""What a token budget costs each chat turn: `python -m devtools.budget_cost`.

Times `budgets.admit` (web, before a turn is queued) and `budgets.record_usage`
(worker, after the model answered) against a real redis-server on loopback, with no
holds and with 1,000 holds in flight, next to a bare PING for scale.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis

import budgets
from devtools.servers import RedisServer

logger = logging.getLogger(__name__)

CAPS = budgets.Caps(participant=10**9, study=10**12)


def per_call_us(calls: int, call: Callable[[int], object]) -> float:
    """Mean microseconds of `call(i)` over `calls` calls."""
    began = time.perf_counter()
    for index in range(calls):
        call(index)
    return (time.perf_counter() - began) / calls * 1e6


def measure(connection: Redis, calls: int, in_flight: int) -> str:
    """One line of figures with `in_flight` holds already present."""
    for key in connection.scan_iter("budget:*"):
        connection.delete(key)
    for index in range(in_flight):
        budgets.admit(connection, f"held-{index}", f"P{index}", 1500, CAPS, 600)
    ids = [uuid.uuid4().hex for _ in range(calls)]
    admit = per_call_us(
        calls, lambda i: budgets.admit(connection, ids[i], f"P{i % 50}", 1500, CAPS, 600)
    )
    usage = {"total_tokens": 300}
    settle = per_call_us(
        calls, lambda i: budgets.record_usage(connection, ids[i], f"P{i % 50}", usage)
    )
    ping = per_call_us(calls, lambda _: connection.ping())
    return (
        f"holds in flight {in_flight:>5}: admit {admit:.0f} us, "
        f"record_usage {settle:.0f} us, PING {ping:.0f} us per call"
    )


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as directory,
        RedisServer(directory=Path(directory)) as server,
    ):
        connection = Redis.from_url(server.url)
        for in_flight in (0, 1000):
            print(measure(connection, args.calls, in_flight))
        connection.close()


if __name__ == "__main__":
    main()
