"""devtools.observability_cost, the command docs/observability.md quotes its figures from."""

from __future__ import annotations

import re

import pytest

from devtools.observability_cost import main

pytestmark = pytest.mark.timeout(120)

LINE = re.compile(r"p50 +\d+\.\d\d ms +p90 +\d+\.\d\d ms$")


def test_it_prints_each_figure(capsys):
    assert main(["--runs", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  p50")[0].strip() for line in lines] == [
        "job closing transaction, no metrics",
        "job closing transaction, with metrics",
        "GET /metrics",
        "GET /admin/api/stats",
        "GET /admin/api/stats?minutes=1440",
    ]
    assert all(LINE.search(line) for line in lines), lines
