"""The chat queue right now: jobs waiting, jobs running, and workers alive to run them.

Read at the moment /metrics is scraped or the admin page polls, so the figures are never
stale, in two round trips whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from rq.registry import StartedJobRegistry
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from studychat.chat.task_queue import QUEUE_NAME, make_queue


@dataclass(frozen=True)
class QueueState:
    """Jobs waiting on the queue, jobs being run, and live workers serving the queue."""

    waiting: int
    running: int
    workers_alive: int


def read_queue_state(connection: Redis) -> QueueState:
    """The chat queue's state now."""
    queue = make_queue(connection)
    started = StartedJobRegistry(queue=queue)
    with connection.pipeline(transaction=False) as pipeline:
        pipeline.llen(queue.key)
        pipeline.zcard(started.key)
        pipeline.smembers(WORKERS_BY_QUEUE_KEY % QUEUE_NAME)
        waiting, running, worker_keys = pipeline.execute()
    return QueueState(waiting, running, count_alive(connection, worker_keys))


def count_alive(connection: Redis, worker_keys: set[bytes]) -> int:
    """How many of the registered workers still have their key (it expires when one dies).

    A worker killed outright stays registered until another cleans the registry up, so
    rq's Worker.count would still count it for minutes.
    """
    if not worker_keys:
        return 0
    with connection.pipeline(transaction=False) as pipeline:
        for key in worker_keys:
            pipeline.exists(key)
        return sum(pipeline.execute())
