"""A load run several times, reported as its median run."""

from __future__ import annotations

import pytest

from devtools.bench.repeats import fold_repeats, repeats_line
from tests.devtools.bench.test_scenarios import row_of


def run_at(web_ms: float, **figures) -> dict:
    """A spread N = 100 run whose server CPU per answer is web_ms + 4 ms."""
    cpu = {"web": web_ms, "worker": 3.0, "redis": 0.7, "mongo": 0.3, "bench": 2.0}
    return row_of("spread", 100, cpu_ms_per_answer=cpu, reference_ms=100.0, **figures)


def test_a_repeated_load_is_reported_as_its_median_run_with_every_run_beside_it():
    runs = [run_at(5.0, answers_per_s=41.0), run_at(3.5, answers_per_s=43.0), run_at(4.2)]
    [row] = fold_repeats(runs)
    # The median run itself, not an average: its rate belongs to its CPU figure.
    assert row["cpu_ms_per_answer"]["web"] == 4.2
    assert row["answers_per_s"] == runs[2]["answers_per_s"]
    assert [run["server_cpu_ms"] for run in row["repeats"]] == pytest.approx([9.0, 7.5, 8.2])
    assert row["repeats"][0]["cpu_ms_per_answer"] == {
        "web": 5.0, "worker": 3.0, "redis": 0.7, "mongo": 0.3,
    }  # fmt: skip
    assert row["targets"] == {
        "server CPU <= 8 ms/answer (median of 3 runs)": False,
        "no errors": True,
    }


def test_an_even_count_takes_the_higher_middle_run():
    [row] = fold_repeats([run_at(3.0), run_at(3.9), run_at(4.1), run_at(5.0)])
    assert row["cpu_ms_per_answer"]["web"] == 4.1
    assert row["targets"]["server CPU <= 8 ms/answer (median of 4 runs)"] is False


def test_an_error_in_any_run_fails_the_median_run_too():
    [row] = fold_repeats([run_at(3.0), run_at(3.1), run_at(3.2, errors=2)])
    assert row["errors"] == 0 and row["targets"]["no errors"] is False


def test_loads_run_once_stay_as_they_were_in_the_order_run():
    together = row_of("together", 300, ratio_to_ideal=0.75)
    rows = fold_repeats([row_of("spread", 50), run_at(3.0), together, run_at(3.5)])
    assert [(row["scenario"], row["participants"]) for row in rows] == [
        ("spread", 50), ("spread", 100), ("together", 300),
    ]  # fmt: skip
    assert "repeats" not in rows[0] and "repeats" not in rows[2]
    assert rows[2] == together


def test_the_summary_gives_each_runs_server_cpu():
    [row] = fold_repeats([run_at(5.0), run_at(3.5), run_at(4.2)])
    assert repeats_line("spread N=100", row) == (
        "- spread N=100 ran 3 times; server CPU ms per answer: 9.0, 7.5, 8.2"
        " (the tables show the median run, 8.2)."
    )
    assert repeats_line("spread N=50", row_of("spread", 50)) is None
