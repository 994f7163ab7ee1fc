"""The load shapes of `make bench` and the goals each run is held to."""

from __future__ import annotations

from devtools.bench.report import summarise
from devtools.bench.scenarios import goals, server_cpu_ms
from tests.devtools.bench.test_report import steady_result


def row_of(scenario: str, participants: int, **figures) -> dict:
    row = summarise(steady_result(), latency_s=2.0)
    row.update(worker="concurrent", scenario=scenario, participants=participants, jitter_s=0.25)
    row.update(figures)
    return row


def test_cpu_goal_counts_the_server_processes_not_the_load_generator():
    cpu = {"web": 3.0, "worker": 2.5, "redis": 1.0, "mongo": 0.5, "bench": 9.0, "upstream": 2.0}
    assert server_cpu_ms({"cpu_ms_per_answer": cpu}) == 7.0
    assert goals(row_of("spread", 100, cpu_ms_per_answer=cpu)) == {
        "server CPU <= 8 ms/answer": True,
        "no errors": True,
    }
    cpu["web"] = 4.5
    assert goals(row_of("spread", 100, cpu_ms_per_answer=cpu))["server CPU <= 8 ms/answer"] is False


def test_a_burst_is_held_to_the_slowest_model_call_plus_one_and_a_half_seconds():
    assert goals(row_of("burst", 500, max_s=3.7)) == {
        "slowest <= model latency + 1.5 s": True,
        "no errors": True,
    }
    assert goals(row_of("burst", 500, max_s=3.8))["slowest <= model latency + 1.5 s"] is False


def test_rate_goals_of_each_load():
    assert goals(row_of("together", 300, ratio_to_ideal=0.69)) == {
        ">=70% of ideal": False,
        "no errors": True,
    }
    assert goals(row_of("long-poll", 1000, ratio_to_ideal=0.8))[">=80% of ideal"] is True
    spread = goals(row_of("spread", 500, ratio_to_ideal=0.9, worker_peak_rss_mb=120.0))
    assert spread == {">=90% of ideal": True, "worker < 300 MB": True, "no errors": True}
    assert goals(row_of("spread", 200, ratio_to_ideal=0.95))["p99 <= latency + 1 s"] is True


def test_errors_fail_every_goal_and_other_runs_have_none():
    failed = row_of("together", 300, ratio_to_ideal=0.9, errors=1)
    assert goals(failed)["no errors"] is False
    assert goals({**failed, "worker": "stock"}) == {}
    assert goals(row_of("burst", 100)) == {}
