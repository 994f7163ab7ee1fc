"""The worker's per-job benchmark runs real chat jobs through the worker on real servers."""

from __future__ import annotations

import re

import pytest

from devtools.bench import worker_cost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_every_chat_job_is_answered_and_the_cpu_reported(capsys):
    args = ["--jobs", "30", "--latency", "0.05", "--concurrency", "8", "--rounds", "2"]
    assert worker_cost.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("ConcurrentWorker: ")
        assert "(30 of 30 finished)" in line
        worker_ms, server_ms = map(float, re.findall(r"([\d.]+) ms", line))
        assert worker_ms > 0 and server_ms > 0
