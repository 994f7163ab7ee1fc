"""What the worker's CPU per chat job is: real chat jobs through ConcurrentWorker, alone.

`python -m devtools.bench.worker_cost` queues `--jobs` legacy chat turns, as the web
enqueues them, on a Redis of its own, and runs them in burst mode in this process
against the fake OpenAI server answering in `--latency` s. The CPU time of this process
and of redis-server, divided by the jobs, is the worker's share of an answer without a
web, a load generator or a MongoDB competing for the cores (and without the per-job
log line: logging stays at WARNING).

It tells code apart more finely than `make bench` on a machine whose speed moves: run
it in two checkouts at the same moment, each sees the same speed. For example
`(cd ../before && python -m devtools.bench.worker_cost > before.txt) &
python -m devtools.bench.worker_cost; wait`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devtools.bench.rq_cost import run_in_burst
from devtools.servers import FakeOpenAIServer, RedisServer
from studychat.chat import jobs
from studychat.chat.task_queue import SERIALIZER, enqueue_chat, make_queue, make_redis
from studychat.settings import Settings, load_settings
from studychat.worker.concurrent_worker import ConcurrentWorker
from studychat.worker.main import start_metrics_writer

PARTICIPANTS = 100


def settings_for(redis_url: str, upstream_url: str, concurrency: int) -> Settings:
    """The settings a worker of this run needs; MongoDB is never reached."""
    return load_settings(
        {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream_url,
            "GPT_VERSION": "gpt-4o-mini",
            "FRONTEND_URL": "http://localhost",
            "REDIS_URL": redis_url,
            "DATABASE_URL": "mongodb://127.0.0.1:1/unused",
            "PROLIFIC_CODE": "BENCH",
            "STUDY_TOKEN_BUDGET": "none",
            "WORKER_CONCURRENCY": str(concurrency),
        }
    )


def upstream_arguments(description: str) -> argparse.ArgumentParser:
    """A parser of the options the worker's benchmarks share: the model's latency, calls at once."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--latency", type=float, default=2.0, help="upstream seconds per answer")
    parser.add_argument(
        "--concurrency", type=int, default=1024, help="model calls at once (WORKER_CONCURRENCY)"
    )
    return parser


def one_round(settings: Settings, redis_pid: int, count: int) -> tuple[float, float, int]:
    """Queue `count` chat turns and run them: (worker, redis) CPU ms per job, finished."""
    connection = make_redis(settings.REDIS_URL, max_connections=settings.REDIS_MAX_CONNECTIONS)
    connection.flushall()
    queue = make_queue(connection)
    for index in range(count):
        message = [{"role": "user", "content": f"turn {index}"}]
        enqueue_chat(queue, message, f"P{index % PARTICIPANTS}", settings)
    worker = ConcurrentWorker(
        [queue],
        connection=connection,
        serializer=SERIALIZER,
        concurrency=settings.WORKER_CONCURRENCY,
    )
    try:
        return run_in_burst(worker, queue, redis_pid, count)
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Print the worker's CPU per chat job, one figure per round."""
    parser = upstream_arguments(__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="chat jobs per round")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        place = Path(folder)
        with (
            RedisServer(directory=place) as redis,
            FakeOpenAIServer(directory=place, latency=args.latency) as upstream,
        ):
            assert redis.pid is not None
            settings = settings_for(redis.url, upstream.base_url, args.concurrency)
            # As `python worker.py` runs them: metrics summed and written once a second.
            metrics = start_metrics_writer(make_redis(settings.REDIS_URL))
            jobs.init_jobs(settings, metrics.tally)
            for _ in range(args.rounds):
                own, on_server, done = one_round(settings, redis.pid, args.jobs)
                print(
                    f"ConcurrentWorker: {own:.2f} ms of worker CPU + {on_server:.2f} ms of"
                    f" redis-server CPU per chat job ({done} of {args.jobs} finished)"
                )
            metrics.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
