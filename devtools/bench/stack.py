"""The benchmark's real servers, and what their processes cost while a run goes on.

Redis, SecantusDB and the fake OpenAI upstream live for the whole benchmark; the web
(gunicorn) and the worker are started afresh for every run, so each run's peak memory
is its own and no job of a previous run (a time-limited stock run leaves many queued)
can leak into the next: Redis is emptied before each start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil
import pymongo
import redis

from devtools.servers import (
    FakeOpenAIServer,
    MongoServer,
    RedisServer,
    WebServer,
    WorkerProcess,
)
from studychat.settings import SETTINGS

logger = logging.getLogger(__name__)

MB = 1024 * 1024
SAMPLE_EVERY_S = 0.2
# Nice values while a run goes on: the servers ahead of whatever else runs on the machine,
# the load generator ahead of the servers.
SERVER_NICE = -5
GENERATOR_NICE = -10
WORKER_ARGS = {"concurrent": (), "stock": ("--stock",)}
# The kinds of serverStatus opcounters that are reads and writes of data.
MONGO_DATA_OPERATIONS = ("insert", "query", "update", "delete", "getmore")


# Limits no run reaches, for `--rate-limits`: their checks cost, their refusals never happen.
UNREACHED_LIMIT = "100000/minute"


def study_env(
    redis_url: str, mongo_url: str, upstream_url: str, rate_limits: bool = False
) -> dict[str, str]:
    """Settings of web and worker for a benchmark: a fake key; rate limits off unless asked.

    Off by default, as issue 14 measured: one client address plays hundreds of
    participants. With `rate_limits`, limits that are checked on every chat but never hit.
    """
    limit = UNREACHED_LIMIT if rate_limits else ""
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
        "CHAT_RATE_LIMIT": limit,
        "CHAT_RATE_LIMIT_PER_IP": limit,
        "STUDY_TOKEN_BUDGET": "none",
    }


def child_env(settings: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any study setting, plus `settings` and `overrides`."""
    names = {setting.name for setting in SETTINGS}
    env = {key: value for key, value in os.environ.items() if key not in names}
    return {**env, **settings, **overrides}


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from one scan of the process table.

    One scan serves every tree of a sample. Reading each thread's /proc children file
    instead cost the benchmark a tenth of a core: the worker runs a thousand threads.
    """
    children: dict[int, list[int]] = defaultdict(list)
    for process in psutil.process_iter(["ppid"]):
        children[process.info["ppid"]].append(process.pid)
    return children


# A name's processes: one pid, several (each with its descendants), or none yet.
Pids = int | Sequence[int] | None


def tree(pid: Pids, children: Mapping[int, list[int]] | None = None) -> list[psutil.Process]:
    """The processes and all their descendants that are alive now (`children`: see above)."""
    if pid is None:
        return []
    children = children_by_parent() if children is None else children
    found: list[psutil.Process] = []
    todo = [pid] if isinstance(pid, int) else list(pid)
    while todo:
        current = todo.pop()
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found.append(psutil.Process(current))
            todo.extend(children.get(current, ()))
    return found


def rss_of(processes: list[psutil.Process]) -> int:
    """Resident memory of processes, in bytes (shared pages count in each process)."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total


def cpu_of(processes: list[psutil.Process]) -> float:
    """CPU seconds used so far by processes, their reaped children (forked jobs) included.

    A reaped child's time is in its parent's children times; the parent of each process
    but the roots is in the list too, so only the roots' are counted, or it would count
    twice: each process whose parent is not in the list is a root.
    """
    pids = {process.pid for process in processes}
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system
            if process.ppid() not in pids:
                total += times.children_user + times.children_system
    return total


def tree_rss(pid: Pids) -> int:
    """Resident memory of a process tree, in bytes."""
    return rss_of(tree(pid))


def tree_cpu(pid: Pids) -> float:
    """CPU seconds used so far by a process tree, reaped children (forked jobs) included."""
    return cpu_of(tree(pid))


def own_process_cpu() -> float:
    """CPU seconds of this process alone (the load generator), its servers not included."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine have spent not idle since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def wait_until_quiet(max_wait_s: float, busy_below: float = 0.2, window_s: float = 3.0) -> float:
    """Wait (at most `max_wait_s`) until the machine is mostly idle; return its busy share.

    Other people's test runs on a shared machine take CPU from the service under test;
    figures worth publishing are taken when the cores are otherwise quiet.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = psutil.cpu_percent(interval=window_s) / 100
        if busy < busy_below or time.monotonic() >= deadline:
            return busy
        logger.warning("machine %.0f%% busy: waiting for it to quiet down", 100 * busy)


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Set the nice value of the scheduler autogroup (the session) of `pid`; whether done.

    With autogroup scheduling on (Linux's default on desktops and here), the CPU is shared
    between sessions first and nice values count only inside one: a session's own weight
    is what gets our servers ahead of other people's test runs.
    """
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


def raise_priority(pgid: int | None, nice: int) -> bool:
    """Run process group `pgid` (every thread, and its session) at nice `nice`; whether allowed.

    The machine may be shared (other people's test runs): a higher priority for the
    benchmark's own processes keeps that load from distorting the figures. Lowering a
    nice value needs root or CAP_SYS_NICE; without it the figures simply carry the noise.
    """
    if pgid is None:
        return False
    try:
        os.setpriority(os.PRIO_PGRP, pgid, nice)
    except (PermissionError, ProcessLookupError) as error:
        logger.warning("cannot raise the priority of process group %s: %s", pgid, error)
        return False
    return set_autogroup_nice(pgid, nice)


@contextlib.contextmanager
def generator_priority(nice: int = GENERATOR_NICE) -> Iterator[None]:
    """Run the block (the load generator's event loop) on this thread at nice `nice`.

    On Linux a thread's nice value is its own, so only the calling thread changes (and
    the weight of this process's session, which holds nothing else of the benchmark).
    The generator needs little CPU but exact timing: ahead of the servers, its polls
    and timestamps are not delayed by the service it measures.
    """
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        logger.warning("cannot raise the load generator's priority (needs root)")
        yield
        return
    set_autogroup_nice(os.getpid(), nice)
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)
        set_autogroup_nice(os.getpid(), before)


@dataclass
class Usage:
    """Peak memory (MB) and CPU seconds of each named process tree during one run."""

    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    # CPU seconds the whole machine was busy (all cores, anyone's processes) and the
    # seconds the block lasted: what is not ours in it was someone else's load.
    machine_busy_s: float = 0.0
    elapsed_s: float = 0.0
    # (monotonic time, CPU seconds so far of each process tree and of the generator),
    # every SAMPLE_EVERY_S: the CPU of any window of the run (report.cpu_between).
    cpu_timeline: list[tuple[float, dict[str, float]]] = field(default_factory=list)


class UsageSampler:
    """Samples memory and CPU of named process trees on a thread, and CPU at both ends."""

    def __init__(self, pids: Mapping[str, Pids]) -> None:
        self.pids = dict(pids)
        self.usage = Usage(peak_rss_mb=dict.fromkeys(self.pids, 0.0))
        self._cpu_at_start = {name: tree_cpu(pid) for name, pid in self.pids.items()}
        self._machine_at_start = machine_busy_s()
        self._began = time.monotonic()
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
        self.usage.machine_busy_s = machine_busy_s() - self._machine_at_start
        self.usage.elapsed_s = time.monotonic() - self._began

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self._sample()

    def _sample(self) -> None:
        children = children_by_parent()
        trees = {name: tree(pid, children) for name, pid in self.pids.items()}
        peaks = self.usage.peak_rss_mb
        for name, processes in trees.items():
            peaks[name] = max(peaks[name], rss_of(processes) / MB)
        cpu = {name: cpu_of(processes) for name, processes in trees.items()}
        cpu["bench"] = own_process_cpu()
        self.usage.cpu_timeline.append((time.monotonic(), cpu))


class BenchStack:
    """Redis, SecantusDB and the fake upstream, started once for the whole benchmark."""

    def __init__(
        self, directory: Path, latency_s: float, jitter_s: float, rate_limits: bool = False
    ) -> None:
        self.directory = directory
        self.rate_limits = rate_limits
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
            raise_priority(server.pid, SERVER_NICE)
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
        return study_env(self.redis.url, self.mongo.url, self.upstream.base_url, self.rate_limits)

    def upstream_call(self, path: str, payload: dict | None = None) -> dict:
        """GET (or POST `payload` to) a control path of the fake upstream; its JSON answer."""
        url = self.upstream.base_url.removesuffix("/v1") + path
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read() or b"{}")

    def redis_commands(self) -> tuple[int, Counter[str], int]:
        """Commands Redis has run so far, in all and by name, those inside transactions and
        scripts too: what round trips cost it, whatever the machine's speed. And the times
        it has read from a client (`total_reads_processed`): about one per round trip, a
        pipeline or a transaction being one.

        All come from one INFO, so that they count the very same commands: read apart,
        the commands a worker runs between the two reads would be in one and not the other.
        """
        info = self.redis_info("all")
        calls = Counter(
            {
                name.removeprefix("cmdstat_"): int(figures["calls"])
                for name, figures in info.items()
                if name.startswith("cmdstat_")
            }
        )
        return int(info["total_commands_processed"]), calls, int(info["total_reads_processed"])

    def mongo_operations(self) -> Counter[str]:
        """MongoDB's data operations so far, by kind (serverStatus opcounters): what each
        answer costs the database, whatever the machine's speed. Commands (pings, hellos,
        this very call) are left out.
        """
        with pymongo.MongoClient(self.mongo.url, directConnection=True) as client:
            counters = client.admin.command("serverStatus")["opcounters"]
        return Counter({kind: int(counters.get(kind, 0)) for kind in MONGO_DATA_OPERATIONS})

    def redis_memory_bytes(self) -> int:
        """Memory Redis holds for its data now (`used_memory`)."""
        return int(self.redis_info("memory")["used_memory"])

    def redis_info(self, section: str) -> dict[str, Any]:
        """One section of Redis's INFO, on a connection of its own."""
        with redis.Redis.from_url(self.redis.url) as client:
            return client.info(section)

    def shared_pids(self) -> dict[str, int | None]:
        """Pids of the servers that live across runs."""
        return {"upstream": self.upstream.pid, "redis": self.redis.pid, "mongo": self.mongo.pid}

    @contextlib.contextmanager
    def service(
        self, worker_kind: str, overrides: Mapping[str, str], worker_processes: int = 1
    ) -> Iterator[tuple[WebServer, list[WorkerProcess]]]:
        """A fresh web and `worker_processes` workers on an empty Redis; all killed afterwards."""
        redis.Redis.from_url(self.redis.url).flushall()
        self.upstream_call("/_control", {"reset": True})  # counters start from zero
        env = child_env(self.settings(), overrides)
        run_dir = self.directory / worker_kind
        web = WebServer(env, directory=run_dir)
        workers = [
            WorkerProcess(
                env,
                list(WORKER_ARGS[worker_kind]),
                directory=run_dir,
                name=f"worker-{worker_kind}" + (f"-{index + 1}" if index else ""),
            )
            for index in range(worker_processes)
        ]
        processes = [web, *workers]
        try:
            # None waits for another: they start together.
            with ThreadPoolExecutor(len(processes)) as pool:
                for started in [pool.submit(process.start) for process in processes]:
                    started.result()
            for process in processes:
                raise_priority(process.pid, SERVER_NICE)
            yield web, workers
        finally:
            # The run is measured and Redis is emptied before the next: a graceful stop
            # (seconds of draining) would only make the benchmark longer.
            for process in reversed(processes):
                process.kill()
