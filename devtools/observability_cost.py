"""What observability costs: `python -m devtools.observability_cost [--runs N]`.

1. The closing transaction of a chat job (answer + transcript entry) with and without the
   metric increments of job_metrics.record, against a real local Redis.
2. GET /metrics and GET /admin/api/stats under gunicorn, with a real worker, after chats.

Prints one line per figure; everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from redis import Redis

import chat_log
import job_metrics
from devtools.servers import FakeOpenAIServer, MongoServer, RedisServer, WebServer, WorkerProcess
from job_outcomes import store_outcome

TOKEN = secrets.token_hex(16)  # this run's admin token
USAGE = {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}
ENTRY = {"_id": "x", "messages": [{"role": "user", "content": "hi" * 50}], "status": "finished"}


def summary(label: str, samples: list[float], unit: str = "ms") -> str:
    """One line: the median and 90th percentile of `samples`."""
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"{label:40} p50 {statistics.median(ordered):7.2f} {unit}  p90 {p90:7.2f} {unit}"


def closing_transaction(connection: Redis, with_metrics: bool) -> float:
    """Milliseconds of one job's closing MULTI/EXEC."""
    started = time.perf_counter()
    with connection.pipeline(transaction=True) as pipeline:
        store_outcome(pipeline, str(uuid.uuid4()), 200, '{"response": {}}', 60)
        chat_log.add_entry(pipeline, ENTRY)
        if with_metrics:
            sample = job_metrics.JobSample(job_metrics.FINISHED, 1.2, 1.4, 1, USAGE)
            job_metrics.record(pipeline, sample)
        pipeline.execute()
    return (time.perf_counter() - started) * 1000


def measure_transaction(url: str, runs: int) -> list[str]:
    """The closing transaction, interleaved with and without metrics."""
    connection = Redis.from_url(url)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(runs):
        for flag in (False, True):
            times[flag].append(closing_transaction(connection, flag))
    connection.close()
    return [
        summary("job closing transaction, no metrics", times[False]),
        summary("job closing transaction, with metrics", times[True]),
    ]


def timed_get(connection: http.client.HTTPConnection, path: str) -> Callable[[], float]:
    def get() -> float:
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, (path, answer.status)
        return (time.perf_counter() - started) * 1000

    return get


def measure_web(web: WebServer, runs: int, chats: int) -> list[str]:
    """GET /metrics and /admin/api/stats, after `chats` chat turns."""
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    for _ in range(chats):
        connection.request("POST", "/chat", body, {"Content-Type": "application/json"})
        connection.getresponse().read()
    lines = []
    for path in ("/metrics", "/admin/api/stats", "/admin/api/stats?minutes=1440"):
        get = timed_get(connection, path)
        lines.append(summary(f"GET {path}", [get() for _ in range(runs)]))
    connection.close()
    return lines


def main(argv: list[str] | None = None) -> int:
    """Start the servers, measure, print, stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="requests per figure")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="observability-cost-"))
    with (
        RedisServer(directory=directory / "redis") as redis_server,
        MongoServer(directory=directory / "mongo") as mongo,
        FakeOpenAIServer(directory=directory / "upstream") as upstream,
    ):
        print("\n".join(measure_transaction(redis_server.url, args.runs * 10)))
        env = {
            "OPENAI_API_KEY": "sk-not-a-real-key",
            "OPENAI_BASE_URL": upstream.base_url,
            "GPT_VERSION": "gpt-4o-mini",
            "FRONTEND_URL": "http://localhost",
            "DATABASE_URL": mongo.url,
            "REDIS_URL": redis_server.url,
            "PROLIFIC_CODE": "COST",
            "ADMIN_TOKEN": TOKEN,
            "CHAT_RATE_LIMIT": "",
        }
        with (
            WebServer(env, directory=directory / "web") as web,
            WorkerProcess(env, directory=directory / "worker"),
        ):
            print("\n".join(measure_web(web, args.runs, chats=args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
