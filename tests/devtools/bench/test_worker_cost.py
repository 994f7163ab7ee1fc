"""The worker's per-job benchmark runs real chat jobs through the worker on real servers."""

from __future__ import annotations

import re

import pytest

from devtools.bench import worker_cost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_every_chat_job_is_answered_and_the_cpu_reported(capsys):
    # Enough jobs for redis-server's share (about 0.2 ms a job) to span several of the
    # 10 ms ticks in which the kernel counts a process's CPU; 30 jobs could read 0.
    args = ["--jobs", "300", "--latency", "0.05", "--concurrency", "32", "--rounds", "2"]
    assert worker_cost.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ConcurrentWorker: ")
        assert "(300 of 300 finished)" in line
        worker_ms, server_ms = map(float, re.findall(r"([\d.]+) ms", line))
        assert worker_ms > 0 and server_ms > 0
