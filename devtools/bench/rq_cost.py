"""What RQ's bookkeeping alone costs per job: no-op jobs through RQ's SimpleWorker and ours.

`python -m devtools.bench.rq_cost` queues `--jobs` jobs that do nothing, on a Redis of
its own, and runs them in burst mode in this process, first with RQ's SimpleWorker (one
job at a time, no fork: RQ's own cheapest path), then with ConcurrentWorker. CPU time
of this process and of redis-server, divided by the jobs, is what taking a job off the
queue, recording it as started, finishing it and keeping RQ's registries costs before a
job does any work of its own: the floor under the worker's CPU per answer.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
from redis import Redis
from rq import Queue, SimpleWorker
from rq.worker import BaseWorker

from devtools.servers import RedisServer
from studychat.chat.task_queue import QUEUE_NAME, SERIALIZER
from studychat.worker.concurrent_worker import ConcurrentWorker

NOOP_JOB = "devtools.bench.rq_cost.noop"


def noop(**_: object) -> dict[str, bool]:
    """A job that does nothing, with a result like run_chat's."""
    return {"ok": True}


def fill_queue(connection: Redis, jobs: int) -> Queue:
    """An empty chat queue with `jobs` no-op jobs on it, as the web enqueues chats."""
    connection.flushall()
    queue = Queue(QUEUE_NAME, connection=connection, serializer=SERIALIZER)
    with connection.pipeline() as pipeline:
        for _ in range(jobs):
            queue.enqueue(NOOP_JOB, kwargs={"messages": []}, result_ttl=3600, pipeline=pipeline)
        pipeline.execute()
    return queue


def cpu_ms_per_job(
    make_worker: Callable[[Queue], BaseWorker], connection: Redis, redis_pid: int, jobs: int
) -> tuple[float, float, int]:
    """(this process's, redis-server's) CPU ms per job, and the jobs that finished."""
    queue = fill_queue(connection, jobs)
    return run_in_burst(make_worker(queue), queue, redis_pid, jobs)


def run_in_burst(
    worker: BaseWorker, queue: Queue, redis_pid: int, jobs: int
) -> tuple[float, float, int]:
    """Run `worker` until `queue` is empty: (its, redis-server's) CPU ms per job, finished."""
    server = psutil.Process(redis_pid)
    own_before, server_before = time.process_time(), sum(server.cpu_times()[:2])
    worker.work(burst=True, logging_level="WARNING")
    own = time.process_time() - own_before
    on_server = sum(server.cpu_times()[:2]) - server_before
    return own * 1000 / jobs, on_server * 1000 / jobs, queue.finished_job_registry.count


def workers(concurrency: int) -> dict[str, Callable[[Queue], BaseWorker]]:
    """The workers to compare, by name."""
    return {
        "RQ SimpleWorker": lambda queue: SimpleWorker(
            [queue], connection=queue.connection, serializer=SERIALIZER
        ),
        "ConcurrentWorker": lambda queue: ConcurrentWorker(
            [queue], connection=queue.connection, serializer=SERIALIZER, concurrency=concurrency
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the CPU per no-op job of each worker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per worker")
    parser.add_argument("--concurrency", type=int, default=64, help="ConcurrentWorker's slots")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder, RedisServer(directory=Path(folder)) as redis:
        connection = Redis.from_url(redis.url)
        assert redis.pid is not None
        for name, make_worker in workers(args.concurrency).items():
            own, on_server, finished = cpu_ms_per_job(make_worker, connection, redis.pid, args.jobs)
            print(
                f"{name}: {own:.2f} ms of worker CPU + {on_server:.2f} ms of redis-server CPU"
                f" per no-op job ({finished} of {args.jobs} finished)"
            )
        connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
