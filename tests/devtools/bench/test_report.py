"""Figures of a run computed from turn records: rates, percentiles, requests, targets."""

from __future__ import annotations

import pytest

from devtools.bench.load_client import LoadPlan, LoadResult, TurnRecord
from devtools.bench.report import (
    common_window,
    cpu_between,
    cpu_table,
    fits_machine,
    ideal_rate,
    markdown_table,
    percentile,
    speedups,
    summarise,
    throughput,
)


def steady_result(participants: int = 4, turns: int = 40, period: float = 2.25) -> LoadResult:
    """Every participant answered every `period` seconds, starts 0.1 s apart, 6 requests each."""
    plan = LoadPlan(participants=participants, turns=turns)
    result = LoadResult(plan, began=100.0)
    for index in range(participants):
        start = 100.0 + 0.1 * index
        for turn in range(turns):
            began = start + turn * period
            result.turns.append(TurnRecord(index, turn, began, began + period, requests=6))
    result.ended = max(t.answered for t in result.turns)
    return result


def test_percentile_interpolates_between_ranks():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.6)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_ideal_rate_is_n_over_latency_plus_half_a_poll():
    assert ideal_rate(200, 2.0, 0.5) == pytest.approx(200 / 2.25)


def test_answers_are_counted_over_one_window_common_to_every_participant():
    result = steady_result(participants=4, turns=40, period=2.25)
    row = summarise(result, latency_s=2.0)
    # From the last first chat (100.3) to the first last answer (100 + 40 * 2.25).
    assert row["window_s"] == pytest.approx(40 * 2.25 - 0.3)
    assert row["window_answers"] == sum(
        1 for t in result.turns if 100.3 < t.answered <= 100 + 40 * 2.25
    )
    # A steady service reaches the ideal rate, to within the window's edges.
    assert row["ratio_to_ideal"] == pytest.approx(1.0, abs=0.05)
    assert row["p50_s"] == pytest.approx(2.25) and row["p99_s"] == pytest.approx(2.25)
    assert row["requests_per_answer"] == 6
    assert row["answers"] == 160 and row["errors"] == 0 and row["unanswered"] == 0


def test_a_single_turn_burst_is_counted_from_first_chat_to_last_answer():
    result = steady_result(participants=4, turns=1, period=2.25)
    assert common_window(result) == (100.0, pytest.approx(102.55))
    rates = throughput(result)
    assert rates["window_answers"] == 4
    assert rates["answers_per_s"] == pytest.approx(4 / 2.55)


def test_only_answers_given_while_everyone_is_active_count():
    """Participant 0 chats 0-8 s, participant 1 6-14 s: only 6-8 s has both waiting."""
    plan = LoadPlan(participants=2, turns=4)
    result = LoadResult(plan, began=0.0)
    for turn in range(4):
        result.turns.append(TurnRecord(0, turn, 2.0 * turn, 2.0 * turn + 2.0, requests=1))
        result.turns.append(TurnRecord(1, turn, 6 + 2.0 * turn, 8 + 2.0 * turn, requests=1))
    result.ended = 14.0
    row = summarise(result, latency_s=2.0)
    assert (row["window_s"], row["window_answers"]) == (2.0, 2)  # both answers at 8 s
    assert row["answers_per_s"] == pytest.approx(1.0)
    assert row["span_answers_per_s"] == pytest.approx(8 / 14)


def test_a_rate_that_needs_more_cores_than_the_machine_is_flagged():
    assert fits_machine(80.0, 24.0, 2) == {
        "cores_needed": pytest.approx(1.92),
        "fits_machine": True,
    }
    assert fits_machine(136.6, 18.7, 2)["fits_machine"] is False  # the old N = 500 figure
    # A saturated run measured to within the clock ticks of its CPU times fits; more does not.
    assert fits_machine(247.3, 8.1, 2)["fits_machine"] is True  # 2.003 cores
    assert fits_machine(250.0, 8.2, 2)["fits_machine"] is False  # 2.05 cores


def test_failed_and_cut_off_turns_are_counted_not_hidden():
    result = steady_result(participants=2, turns=2)
    result.turns[1].answered, result.turns[1].error = None, "POST /chat answered 500"
    result.turns[3].answered = None  # still waiting when the run was cut off
    result.deadline_hit = True
    result.ended += 10
    row = summarise(result, latency_s=2.0)
    assert row["errors"] == 1 and row["error_kinds"] == {"POST /chat answered 500": 1}
    assert row["unanswered"] == 1 and row["cut_off"] is True
    # The cut-off turn's wait counts until the end, and the percentiles say they are bounds.
    assert row["latency_lower_bound"] is True
    assert row["max_s"] > 10


def test_speedup_compares_the_two_workers_at_the_same_n():
    rows = [
        {"worker": "concurrent", "participants": 50, "answers_per_s": 20.0},
        {"worker": "stock", "participants": 50, "answers_per_s": 0.5},
        {"worker": "concurrent", "participants": 200, "answers_per_s": 80.0},
    ]
    assert speedups(rows) == {50: pytest.approx(40.0)}


def test_table_marks_lower_bounds_and_shows_ratios_as_percent():
    row = summarise(steady_result(), latency_s=2.0)
    row.update(worker="stock", latency_lower_bound=True, web_peak_rss_mb=150.4, ratio_to_ideal=0.5)
    table = markdown_table([row])
    assert table.splitlines()[0].startswith("| worker | load | N | answers/s")
    assert "| stock | spread | 4 |" in table and "| 50% |" in table and ">=2.25" in table
    assert "| 150 |" in table


def test_cpu_table_shows_ms_per_answer_and_the_machine():
    row = {
        "worker": "concurrent",
        "participants": 200,
        "cpu_ms_per_answer": {"web": 8.71, "worker": 10.3, "all": 24.3},
        "machine_cpu_busy": 0.995,
        "others_cpu_s": 11.2,
        "reference_ms": 512.4,
        "upstream_max_in_flight": 180,
        "worker_concurrency": 512,
        "redis_commands_per_answer": 21.37,
        "redis_reads_per_answer": 6.04,
        "mongo_ops_per_answer": {"update": 1.4, "query": 0.02},
    }
    table = cpu_table([row]).splitlines()
    assert table[0].startswith("| worker | load | N | web ms | worker ms |")
    assert table[0].endswith(
        "| Redis commands per answer | Redis reads per answer | MongoDB operations per answer |"
    )
    cells = "8.7 | 10.3 | - | - | - | - | 24.3 | 100% | 11 | 512 | 180 (512) | 21.4 | 6.0 | 1.42"
    assert table[2] == f"| concurrent | spread | 200 | {cells} |"


def test_runs_in_study_sessions_say_so_in_both_tables():
    row = {"worker": "concurrent", "scenario": "long-poll", "sessions": True, "participants": 10}
    assert (
        markdown_table([row])
        .splitlines()[2]
        .startswith("| concurrent | long-poll (sessions) | 10 |")
    )
    assert cpu_table([row]).splitlines()[2].startswith("| concurrent | long-poll (sessions) | 10 |")


def test_runs_with_several_worker_processes_say_so():
    row = {"worker": "concurrent", "worker_processes": 2, "participants": 10}
    assert markdown_table([row]).splitlines()[2].startswith("| concurrent x2 | spread | 10 |")
    assert cpu_table([row]).splitlines()[2].startswith("| concurrent x2 | spread | 10 |")


def test_cpu_between_two_moments_is_interpolated_from_the_samples():
    timeline = [(0.0, {"web": 0.0}), (1.0, {"web": 0.4}), (2.0, {"web": 1.4})]
    assert cpu_between(timeline, 0.5, 1.5) == {"web": pytest.approx(0.9 - 0.2)}
    assert cpu_between(timeline, -5.0, 9.0) == {"web": pytest.approx(1.4)}  # clamped
    assert cpu_between(timeline[:1], 0.0, 1.0) == {}
