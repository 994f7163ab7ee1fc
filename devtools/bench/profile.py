"""Where the CPU goes during a benchmark run: py-spy on the web and worker processes.

`python -m devtools.bench --profile` samples every web and worker process with py-spy
(only threads holding the GIL, i.e. running Python code; without pausing the process)
while the participants run, keeps py-spy's raw stacks next to the server logs and
writes to `<kind>-<N>-<process>.top.txt` the shares of the process's Python time by part
of the work an answer takes (PHASES: the chat, the polls, gunicorn's reading of requests;
taking, starting and running jobs), by library, and the functions that used the most,
counted by their own time and with everything they call. Once the run's CPU is known,
each part is also given in milliseconds per answer (`add_costs`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

RATE_HZ = 100
TOP = 25

# The parts of the work, each named by the function that does it: a stack belongs to the
# first part whose function it passes through, so a part inside another comes first.
# tests/devtools/bench/test_profile.py checks that every function named here exists.
PHASES: dict[str, tuple[tuple[str, str], ...]] = {
    "web": (
        ("polls answered in front of Flask", "LeanPolls._lean (studychat/web/lean_polls.py"),
        ("polls told from other requests", "LeanPolls._poll_of (studychat/web/lean_polls.py"),
        ("the chat: RQ's enqueue", "enqueue_chat (studychat/chat/task_queue.py"),
        ("the chat: Flask and the rest of the view", "Flask.wsgi_app (flask/app.py"),
        ("access lines", "AccessLogger.access (studychat/web/access_log.py"),
        ("gunicorn: reading and parsing requests", "Parser.__next__ (gunicorn/http/parser.py"),
        (
            "gunicorn: environ, writing answers, keep-alive",
            "AsyncWorker.handle (gunicorn/workers/base_async.py",
        ),
        (
            "hearing of answers (the subscription)",
            "JobUpdates._listen (studychat/web/job_updates.py",
        ),
        ("gevent's hub (waking greenlets)", "Hub.run (gevent/hub.py"),
    ),
    "worker": (
        ("the model call (openai, httpx)", "_call_model (studychat/chat/jobs.py"),
        (
            "storing the answer, transcript entry and budget",
            "when_redis_is_up (studychat/chat/jobs.py",
        ),
        ("the rest of the job (its log line)", "run_chat (studychat/chat/jobs.py"),
        (
            "taking jobs from the queue",
            "ConcurrentWorker._take (studychat/worker/concurrent_worker.py",
        ),
        (
            "recording jobs as started",
            "ConcurrentWorker._start (studychat/worker/concurrent_worker.py",
        ),
        (
            "RQ's records of successes, in batches",
            "SuccessBatches._loop (studychat/worker/success_batches.py",
        ),
        ("after each job", "ConcurrentWorker._run (studychat/worker/concurrent_worker.py"),
        (
            "the rest of the main loop",
            "ConcurrentWorker._dequeue_loop (studychat/worker/concurrent_worker.py",
        ),
        ("shipping transcripts to MongoDB", "ChatLogShipper.run (studychat/store/chat_log.py"),
        ("writing metrics", "TallyWriter.run (studychat/chat/metrics_tally.py"),
        ("threads and their pool", "Thread._bootstrap (threading.py"),
    ),
}
# Besides work outside every part, py-spy catches some stacks without their outer frames.
OTHER = "other"


def find_py_spy() -> str | None:
    """The py-spy executable next to the running interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def parse_raw(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """py-spy's raw (collapsed) output: stack of frames (outermost first) -> samples."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not count.isdigit():
            continue
        frames = tuple(f for f in stack.split(";") if f and not f.startswith("process "))
        stacks[frames or ("(no Python frame)",)] += int(count)
    return stacks


def top_functions(
    stacks: Mapping[tuple[str, ...], int], count: int = TOP
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """Total samples, and the `count` functions with most own / inclusive share of them."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, samples in stacks.items():
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    total = sum(stacks.values()) or 1

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, samples / total) for name, samples in counter.most_common(count)]

    return sum(stacks.values()), shares(own), shares(inclusive)


def phase_of(frames: tuple[str, ...], phases: tuple[tuple[str, str], ...]) -> str:
    """The first part of the work whose function the stack passes through, else OTHER."""
    for label, function in phases:
        if any(frame.startswith(function) for frame in frames):
            return label
    return OTHER


def library_of(frame: str) -> str:
    """The top-level package (or module) of a frame's file: `f (gunicorn/http/x.py:9)`."""
    _, _, where = frame.partition(" (")
    path = where.split(":", 1)[0]
    top = path.split("/", 1)[0].removesuffix(".py")
    return top or frame


def shares_by(
    stacks: Mapping[tuple[str, ...], int], key: Callable[[tuple[str, ...]], str]
) -> list[tuple[str, float]]:
    """Shares of all samples grouped by `key` of their stack, the largest first."""
    counts: Counter[str] = Counter()
    for frames, samples in stacks.items():
        counts[key(frames)] += samples
    total = sum(counts.values()) or 1
    return [(name, samples / total) for name, samples in counts.most_common()]


def phase_lines(
    stacks: Mapping[tuple[str, ...], int], process: str, ms_per_answer: float | None
) -> list[str]:
    """The part-of-the-work section; with the process's CPU per answer, in ms as well."""
    phases = PHASES.get(process)
    if not phases:
        return []
    shares = shares_by(stacks, lambda frames: phase_of(frames, phases))
    unit = "" if ms_per_answer is None else f" (of {ms_per_answer:.2f} ms per answer)"
    lines = [f"by part of the work{unit}:"]
    for label, share in shares:
        ms = "" if ms_per_answer is None else f"  {share * ms_per_answer:5.2f} ms"
        lines.append(f"  {share:6.1%}{ms}  {label}")
    return [*lines, ""]


def report_text(
    title: str,
    stacks: Mapping[tuple[str, ...], int],
    process: str = "",
    ms_per_answer: float | None = None,
) -> str:
    """A plain-text report: parts of the work, libraries, the functions that used most.

    The milliseconds share out the process's whole CPU per answer by its Python samples:
    py-spy counts only time holding the GIL, so time in system calls is spread alike.
    """
    total, own, inclusive = top_functions(stacks)
    lines = [f"{title}: {total} samples at {RATE_HZ} Hz (~{total / RATE_HZ:.1f} CPU s)", ""]
    lines += phase_lines(stacks, process, ms_per_answer)
    lines.append("by library (of the function running):")
    lines += [f"  {share:6.1%}  {name}" for name, share in shares_by(stacks, _innermost)[:TOP]]
    lines += ["", "own time (the function itself):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in own]
    lines += ["", "inclusive time (with what it calls):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in inclusive]
    return "\n".join(lines) + "\n"


def _innermost(frames: tuple[str, ...]) -> str:
    return library_of(frames[-1])


class Profiler:
    """py-spy recorders on named processes (with their children) for the length of a block."""

    def __init__(self, pids: Mapping[str, int | None], directory: Path, prefix: str) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.directory = directory
        self.prefix = prefix
        self._spies: dict[str, subprocess.Popen[bytes]] = {}
        self._stacks: dict[str, Counter[tuple[str, ...]]] = {}

    def raw_path(self, name: str) -> Path:
        """Where py-spy writes the raw stacks of process `name`."""
        return self.directory / f"{self.prefix}-{name}.raw.txt"

    def __enter__(self) -> Self:
        executable = find_py_spy()
        if executable is None:
            logger.warning("py-spy not found: install requirements-dev.txt; no profile taken")
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            argv = [executable, "record", "--pid", str(pid), "--format", "raw", "--output",
                    str(self.raw_path(name)), "--rate", str(RATE_HZ), "--gil", "--nonblocking",
                    "--function", "--subprocesses"]  # fmt: skip
            self._spies[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for spy in self._spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in self._spies.values():
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        self.write_reports()

    def write_reports(self) -> None:
        """A report beside each raw file py-spy wrote."""
        for name in self.pids:
            with contextlib.suppress(FileNotFoundError):
                raw = self.raw_path(name).read_text(errors="replace").splitlines()
                self._stacks[name] = parse_raw(raw)
                report = self._write_text(name, self._stacks[name], None)
                logger.warning("profile of %s: %s", name, report)

    def add_costs(self, cpu_ms_per_answer: Mapping[str, float]) -> None:
        """Write the reports again with each part of the work in ms per answer."""
        for name, stacks in self._stacks.items():
            self._write_text(name, stacks, cpu_ms_per_answer.get(name))

    def _write_text(
        self, name: str, stacks: Mapping[tuple[str, ...], int], ms: float | None
    ) -> Path:
        report = self.directory / f"{self.prefix}-{name}.top.txt"
        report.write_text(report_text(f"{self.prefix} {name}", stacks, name, ms))
        return report
