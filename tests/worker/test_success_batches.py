"""Successes written in batches, against a real Redis: shared transactions, shutdown, outages."""

from __future__ import annotations

import threading

import pytest
from redis import Redis

from studychat.worker.success_batches import SuccessBatches
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(60)


def transactions_run(connection: Redis) -> int:
    """How many MULTI/EXEC transactions Redis has run since it started."""
    return int(connection.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))


def counting_batches(connection: Redis, window_s: float, errors: list | None = None):
    """Batches whose every success adds one to the key `written`."""

    def write(pipeline, successes: list[int]) -> None:
        pipeline.incrby("written", len(successes))

    def on_error(error: Exception, count: int) -> None:
        (errors if errors is not None else []).append((type(error).__name__, count))

    return SuccessBatches(connection, write, on_error, window_s=window_s)


def written(connection: Redis) -> int:
    return int(connection.get("written") or 0)


def test_successes_ending_together_share_one_transaction(connection):
    batches = counting_batches(connection, window_s=1.0)
    batches.start()
    before = transactions_run(connection)
    together = threading.Barrier(20)

    def end_job(n: int) -> None:
        together.wait(timeout=10)
        batches.add(n)

    threads = [threading.Thread(target=end_job, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: written(connection) == 20)
    assert transactions_run(connection) - before == 1
    batches.stop()


def test_stopping_writes_what_is_pending_at_once(connection):
    batches = counting_batches(connection, window_s=60)
    batches.start()
    for n in range(3):
        batches.add(n)
    batches.stop()
    # A worker shutting down does not wait out the window, and loses none of them.
    assert written(connection) == 3


def test_a_batch_redis_cannot_take_is_reported_and_the_next_is_written(connection, own_redis):
    errors: list = []
    batches = counting_batches(connection, window_s=0.2, errors=errors)
    batches.start()
    own_redis.stop()
    batches.add(1)
    batches.add(2)
    wait_for(lambda: errors)
    assert errors == [("ConnectionError", 2)]
    own_redis.start()
    batches.add(3)
    wait_for(lambda: written(connection) == 1)
    batches.stop()
