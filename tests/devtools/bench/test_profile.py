"""Reading py-spy's raw stacks into the functions that used the most CPU."""

from __future__ import annotations

import pytest

from devtools.bench.profile import parse_raw, report_text, top_functions

RAW = [
    'process 12:"python worker.py";main (worker.py:44);run (jobs.py:30);send (http.py:9) 6',
    'process 12:"python worker.py";main (worker.py:44);run (jobs.py:30) 2',
    'process 12:"python worker.py";main (worker.py:44);log (logging.py:5) 2',
    "a broken line without a count",
]


def test_raw_lines_become_stacks_without_the_process_frame():
    stacks = parse_raw(RAW)
    assert stacks[("main (worker.py:44)", "run (jobs.py:30)", "send (http.py:9)")] == 6
    assert sum(stacks.values()) == 10


def test_top_functions_by_own_and_inclusive_time():
    total, own, inclusive = top_functions(parse_raw(RAW))
    assert total == 10
    assert own[0] == ("send (http.py:9)", pytest.approx(0.6))
    assert dict(inclusive)["run (jobs.py:30)"] == pytest.approx(0.8)
    assert dict(inclusive)["main (worker.py:44)"] == pytest.approx(1.0)


def test_report_names_samples_and_shares():
    text = report_text("concurrent-200 worker", parse_raw(RAW))
    assert text.startswith("concurrent-200 worker: 10 samples at 100 Hz")
    assert " 60.0%  send (http.py:9)" in text
