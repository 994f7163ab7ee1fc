"""The model call benchmark makes real calls through the openai client, three ways."""

from __future__ import annotations

import re

import pytest

from devtools.bench import model_call_cost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_every_call_is_answered_and_the_cpu_of_each_way_reported(capsys):
    args = ["--calls", "40", "--latency", "0.05", "--concurrency", "8"]
    assert model_call_cost.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["one at a time", "threads", "asyncio"]
    for line in lines:
        assert "(40 of 40 answered;" in line
        (cpu_ms,) = map(float, re.findall(r"([\d.]+) ms", line))
        assert cpu_ms > 0
