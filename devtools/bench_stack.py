"""The benchmark's real servers, and what their processes cost while a run goes on.

Redis, SecantusDB and the fake OpenAI upstream live for the whole benchmark; the web
(gunicorn) and the worker are started afresh for every run, so each run's peak memory
is its own and no job of a previous run (a time-limited stock run leaves many queued)
can leak into the next: Redis is emptied before each start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil
import redis

from devtools.servers import (
    REPO_ROOT,
    FakeOpenAIServer,
    MongoServer,
    RedisServer,
    WebServer,
    WorkerProcess,
)
from settings import SETTINGS

logger = logging.getLogger(__name__)

MB = 1024 * 1024
SAMPLE_EVERY_S = 0.2
WORKER_ARGS = {"concurrent": (), "stock": ("--stock",)}


def study_env(redis_url: str, mongo_url: str, upstream_url: str) -> dict[str, str]:
    """Settings of web and worker for a benchmark: generous limits, a fake key."""
    return {
        "OPENAI_API_KEY": "sk-bench-not-a-real-key",
        "OPENAI_BASE_URL": upstream_url,
        "GPT_VERSION": "gpt-4o-mini",
        "GPT_TOKEN_LIMIT": "300",
        "FRONTEND_URL": "http://localhost:5173",
        "DATABASE_URL": mongo_url,
        "DATABASE_NAME": "bench",
        "REDIS_URL": redis_url,
        "PROLIFIC_CODE": "BENCH000",
        "LLM_TIMEOUT_S": "30",
        "LLM_MAX_RETRIES": "2",
        # The benchmark is one client address playing hundreds of participants.
        "CHAT_RATE_LIMIT": "100000/minute",
    }


def child_env(settings: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any study setting, plus `settings` and `overrides`."""
    names = {setting.name for setting in SETTINGS}
    env = {key: value for key, value in os.environ.items() if key not in names}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return {**env, **settings, **overrides}


def child_pids(pid: int) -> list[int]:
    """Pids of the children of `pid`, from /proc (cheaper than scanning every process)."""
    pids: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.extend(int(child) for child in children.read_text().split())
    return pids


def tree(pid: int | None) -> list[psutil.Process]:
    """The process and all its descendants that are alive now."""
    if pid is None:
        return []
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found.append(psutil.Process(current))
            todo.extend(child_pids(current))
    return found


def tree_rss(pid: int | None) -> int:
    """Resident memory of a process tree, in bytes (shared pages count in each process)."""
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


def tree_cpu(pid: int | None) -> float:
    """CPU seconds used so far by a process tree, reaped children (forked jobs) included."""
    total = 0.0
    for index, process in enumerate(tree(pid)):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
            if index == 0:
                total += times.children_user + times.children_system
    return total


@dataclass
class Usage:
    """Peak memory (MB) and CPU seconds of each named process tree during one run."""

    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)


class UsageSampler:
    """Samples the memory of named process trees on a thread; CPU is taken at both ends."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = dict(pids)
        self.usage = Usage(peak_rss_mb=dict.fromkeys(self.pids, 0.0))
        self._cpu_at_start = {name: tree_cpu(pid) for name, pid in self.pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for name, pid in self.pids.items():
            self.usage.cpu_s[name] = tree_cpu(pid) - self._cpu_at_start[name]

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._sample()

    def _sample(self) -> None:
        peaks = self.usage.peak_rss_mb
        for name, pid in self.pids.items():
            peaks[name] = max(peaks[name], tree_rss(pid) / MB)


class BenchStack:
    """Redis, SecantusDB and the fake upstream, started once for the whole benchmark."""

    def __init__(self, directory: Path, latency_s: float, jitter_s: float) -> None:
        self.directory = directory
        self.redis = RedisServer(directory=directory / "redis")
        self.mongo = MongoServer(directory=directory / "mongo")
        self.upstream = FakeOpenAIServer(
            directory=directory / "upstream",
            latency=latency_s,
            extra_args=["--jitter", str(jitter_s)],
        )

    def __enter__(self) -> Self:
        for server in (self.redis, self.mongo, self.upstream):
            server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in (self.upstream, self.mongo, self.redis):
            server.stop()

    def settings(self) -> dict[str, str]:
        """The study settings pointing at this stack's servers."""
        return study_env(self.redis.url, self.mongo.url, self.upstream.base_url)

    def shared_pids(self) -> dict[str, int | None]:
        """Pids of the servers that live across runs."""
        return {"upstream": self.upstream.pid, "redis": self.redis.pid, "mongo": self.mongo.pid}

    @contextlib.contextmanager
    def service(
        self, worker_kind: str, overrides: Mapping[str, str]
    ) -> Iterator[tuple[WebServer, WorkerProcess]]:
        """A fresh web and worker on an empty Redis; both killed afterwards."""
        redis.Redis.from_url(self.redis.url).flushall()
        env = child_env(self.settings(), overrides)
        run_dir = self.directory / worker_kind
        web = WebServer(env, directory=run_dir)
        worker = WorkerProcess(
            env, list(WORKER_ARGS[worker_kind]), directory=run_dir, name=f"worker-{worker_kind}"
        )
        try:
            with ThreadPoolExecutor(2) as pool:  # neither waits for the other: start together
                for started in [pool.submit(process.start) for process in (web, worker)]:
                    started.result()
            yield web, worker
        finally:
            # The run is measured and Redis is emptied before the next: a graceful stop
            # (seconds of draining) would only make the benchmark longer.
            for process in (worker, web):
                process.kill()
