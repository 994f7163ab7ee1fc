"""What one model call costs the worker in CPU: one at a time, on threads, on an asyncio loop.

`python -m devtools.bench.model_call_cost` makes `--calls` chat completion calls against
the fake OpenAI server and divides this process's CPU time by them, three ways:

- one at a time, on one thread, against an upstream that answers at once: the call's
  own cost, with nothing else in flight;
- on `--concurrency` threads, as ConcurrentWorker makes them (`llm_client.complete`
  with a client per call in flight, model_clients), the upstream answering in
  `--latency` s so that the calls overlap;
- on one asyncio loop, through `openai.AsyncOpenAI`, the same generic POST, up to
  `--concurrency` at once with a client per call in flight, the same latency.

The difference between the first line and the second is what calls that wait and overlap
add (mostly the waiting: docs/benchmark.md, tenth round); the third says whether an
asyncio model client (issue 14's "an asyncio model client on one event loop") would take
that away. The fake server runs in its own process, so its CPU is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import openai

from devtools.bench.worker_cost import settings_for, upstream_arguments
from devtools.servers import FakeOpenAIServer
from studychat.chat import llm_client
from studychat.settings import Settings

REQUEST = llm_client.build_request([{"role": "user", "content": "hello"}], "gpt-4o-mini", 100)


Way = Callable[[int], int]  # makes that many calls; returns how many were answered


def cpu_ms_per_call(calls: int, run: Way) -> tuple[float, int]:
    """This process's CPU ms per call while `run` makes `calls` calls, and the answers."""
    before = time.process_time()
    answered = run(calls)
    return (time.process_time() - before) * 1000 / calls, answered


def on_threads(settings: Settings, concurrency: int) -> Way:
    """Calls as the worker makes them: each on a thread, with a client of its own."""
    clients = llm_client.make_clients(settings)

    def one(index: int) -> bool:
        with clients.client() as client:
            return bool(llm_client.complete(client, REQUEST, f"call-{index}").raw_json)

    def run(calls: int) -> int:
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(one, range(calls)))

    run(concurrency)  # every client and connection made before the count, as in a worker
    return run


def make_async_client(settings: Settings, tls: ssl.SSLContext) -> openai.AsyncOpenAI:
    """An asyncio client configured as llm_client.make_client configures the worker's."""
    http_client = openai.DefaultAsyncHttpxClient(limits=llm_client.ONE_CONNECTION, verify=tls)
    return openai.AsyncOpenAI(**llm_client.client_options(settings), http_client=http_client)


async def on_one_loop(settings: Settings, calls: int, concurrency: int) -> int:
    """`calls` calls on this loop, up to `concurrency` at once, a client per call in flight."""
    tls = httpx.create_ssl_context()
    idle: list[openai.AsyncOpenAI] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(index: int) -> bool:
        async with slots:
            client = idle.pop() if idle else make_async_client(settings, tls)
            try:
                response = await client.post(
                    llm_client.CHAT_COMPLETIONS,
                    body=REQUEST,
                    cast_to=httpx.Response,
                    options={"idempotency_key": f"call-{index}"},
                )
                # As llm_client.complete reads the answer.
                return bool(json.loads(response.text).get("choices"))
            finally:
                idle.append(client)

    return sum(await asyncio.gather(*(one(index) for index in range(calls))))


def on_asyncio(settings: Settings, concurrency: int, runner: asyncio.Runner) -> Way:
    """Calls on `runner`'s loop (asyncio's own, as a worker would run it)."""

    def run(calls: int) -> int:
        return runner.run(on_one_loop(settings, calls, concurrency))

    run(concurrency)  # every client and connection made before the count, as in a worker
    return run


def alone(upstream_url: str, calls: int) -> tuple[float, int]:
    """CPU ms per call, one call at a time on one thread."""
    settings = settings_for("redis://127.0.0.1:1", upstream_url, 1)
    return cpu_ms_per_call(calls, on_threads(settings, 1))


def side_by_side(upstream_url: str, calls: int, concurrency: int) -> dict[str, tuple[float, int]]:
    """CPU ms per call, up to `concurrency` at once, on threads and on one asyncio loop."""
    settings = settings_for("redis://127.0.0.1:1", upstream_url, concurrency)
    threads = cpu_ms_per_call(calls, on_threads(settings, concurrency))
    with asyncio.Runner() as runner:
        loop = cpu_ms_per_call(calls, on_asyncio(settings, concurrency, runner))
    return {"threads": threads, "asyncio": loop}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the CPU per model call of each way."""
    parser = upstream_arguments(__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report(*measure(args), args)
    return 0


def measure(args: argparse.Namespace) -> tuple[tuple[float, int], dict[str, tuple[float, int]]]:
    """Each way's CPU ms per call and answers, against upstreams of the fake model."""
    with (
        tempfile.TemporaryDirectory() as folder,
        FakeOpenAIServer(directory=Path(folder)) as at_once,
        FakeOpenAIServer(directory=Path(folder), latency=args.latency) as slow,
    ):
        one_at_a_time = alone(at_once.base_url, args.calls)
        return one_at_a_time, side_by_side(slow.base_url, args.calls, args.concurrency)


def report(
    one_at_a_time: tuple[float, int],
    overlapping: dict[str, tuple[float, int]],
    args: argparse.Namespace,
) -> None:
    """One line per way."""
    print(line("one at a time", *one_at_a_time, args.calls, "one thread, answered at once"))
    at_once = f"up to {args.concurrency} at once, {args.latency} s each"
    for way in ("threads", "asyncio"):
        print(line(way, *overlapping[way], args.calls, at_once))


def line(way: str, cpu_ms: float, answered: int, calls: int, how: str) -> str:
    """One way's figure, as printed."""
    return f"{way}: {cpu_ms:.2f} ms of CPU per model call ({answered} of {calls} answered; {how})"


if __name__ == "__main__":
    raise SystemExit(main())
