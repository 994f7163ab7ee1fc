"""The RQ bookkeeping benchmark runs every job through both workers on a real Redis."""

from __future__ import annotations

import re

import pytest

from devtools.bench import rq_cost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_both_workers_finish_every_job_and_report_their_cpu(capsys):
    assert rq_cost.main(["--jobs", "40", "--concurrency", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["RQ SimpleWorker", "ConcurrentWorker"]
    for line in lines:
        assert "(40 of 40 finished)" in line
        worker_ms, server_ms = map(float, re.findall(r"([\d.]+) ms", line))
        assert worker_ms > 0 and server_ms >= 0
