"""Where the CPU goes during a benchmark run: py-spy on the web and worker processes.

`python -m devtools.bench --profile` samples every web and worker process with py-spy
(only threads holding the GIL, i.e. running Python code; without pausing the process)
while the participants run, keeps py-spy's raw stacks next to the server logs and
writes the functions that used the most CPU, counted by their own time and with
everything they call, to `<kind>-<N>-<process>.top.txt`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

RATE_HZ = 100
TOP = 25


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


def report_text(title: str, stacks: Mapping[tuple[str, ...], int]) -> str:
    """A plain-text report of the functions that used the most CPU."""
    total, own, inclusive = top_functions(stacks)
    lines = [f"{title}: {total} samples at {RATE_HZ} Hz (~{total / RATE_HZ:.1f} CPU s)", ""]
    lines.append("own time (the function itself):")
    lines += [f"  {share:6.1%}  {name}" for name, share in own]
    lines += ["", "inclusive time (with what it calls):"]
    lines += [f"  {share:6.1%}  {name}" for name, share in inclusive]
    return "\n".join(lines) + "\n"


class Profiler:
    """py-spy recorders on named processes (with their children) for the length of a block."""

    def __init__(self, pids: Mapping[str, int | None], directory: Path, prefix: str) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.directory = directory
        self.prefix = prefix
        self._spies: dict[str, subprocess.Popen[bytes]] = {}

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
        for name, spy in self._spies.items():
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            self._write_report(name)

    def _write_report(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            stacks = parse_raw(self.raw_path(name).read_text(errors="replace").splitlines())
            report = self.directory / f"{self.prefix}-{name}.top.txt"
            report.write_text(report_text(f"{self.prefix} {name}", stacks))
            logger.warning("profile of %s: %s", name, report)
