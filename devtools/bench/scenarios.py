"""The shapes of load `make bench` runs, and the goal each is held to.

- spread: N participants (--participants) start over one turn and chat --turns turns,
  polling every --poll seconds: the steady state of a study.
- together: 300 start within 100 ms and chat 3 turns: a class told "please begin".
- burst: 500 send their first message within the same 100 ms, one turn each.
- long-poll: 1,000 spread over a turn, 3 turns, each poll held open up to 20 s (`wait`),
  with WORKER_CONCURRENCY 1024: at 2 s an answer, 1,000 participants keep about 900
  model calls in flight, and the default of 512 would cap the worker at 256 answers/s.

--stagger and --wait reshape the spread runs only; the others are fixed so that their
figures compare from one run to the next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BURST_WINDOW_S = 0.1
# The server processes: what a deployment pays for (the load generator and the fake
# upstream stand in for browsers and OpenAI).
SERVER_PROCESSES = ("web", "worker", "redis", "mongo")
CPU_GOAL_MS = 8.0
# The load the CPU goal is held to (issue 14's first row), and how many times `make bench`
# runs it: its figure moves by a third between runs of the same code (repeats.py).
CPU_GOAL_N = 100
CPU_GOAL_RUNS = 5


@dataclass(frozen=True)
class Scenario:
    """One shape of load; None takes the command line's value."""

    name: str
    participants: tuple[int, ...] | None = None
    turns: int | None = None
    stagger_s: float | None = None
    wait_s: float | None = None
    # WORKER_CONCURRENCY the load needs, where the default would cap it.
    worker_concurrency: int | None = None


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("spread"),
        Scenario("together", (300,), 3, BURST_WINDOW_S, 0.0),
        Scenario("burst", (500,), 1, BURST_WINDOW_S, 0.0),
        Scenario("long-poll", (1000,), 3, None, 20.0, worker_concurrency=1024),
    )
}
DEFAULT_SCENARIOS = ",".join(SCENARIOS)


def server_cpu_ms(row: Mapping[str, Any]) -> float | None:
    """CPU milliseconds per answer of the server processes together."""
    per_answer = row.get("cpu_ms_per_answer") or {}
    if not all(name in per_answer for name in SERVER_PROCESSES):
        return None
    return sum(per_answer[name] for name in SERVER_PROCESSES)


def goals(row: Mapping[str, Any]) -> dict[str, bool]:
    """The goals (issues 3 and 14) a run of the concurrent worker is held to, met or not."""
    if row.get("worker") != "concurrent":
        return {}
    checks = _goals_of(row.get("scenario", "spread"), row["participants"], row)
    if checks:
        checks["no errors"] = row["errors"] == 0 and row["unanswered"] == 0
    return checks


def cpu_goal(row: Mapping[str, Any]) -> dict[str, bool]:
    """Server CPU per answer at most CPU_GOAL_MS; of the median run when the load repeated."""
    cpu = server_cpu_ms(row)
    runs = len(row.get("repeats") or ())
    of = f" (median of {runs} runs)" if runs > 1 else ""
    return {f"server CPU <= {CPU_GOAL_MS:g} ms/answer{of}": cpu is not None and cpu <= CPU_GOAL_MS}


def _goals_of(scenario: str, n: int, row: Mapping[str, Any]) -> dict[str, bool]:
    ratio = row["ratio_to_ideal"]
    if scenario == "spread" and n == CPU_GOAL_N:
        return cpu_goal(row)
    if scenario == "spread" and n == 200:
        p99 = row.get("p99_s")
        latest = row["latency_s"] + 1
        return {
            ">=90% of ideal": ratio >= 0.9,
            "p99 <= latency + 1 s": p99 is not None and p99 <= latest,
        }
    if scenario == "spread" and n == 500:
        memory = row.get("worker_peak_rss_mb")
        return {
            ">=90% of ideal": ratio >= 0.9,
            "worker < 300 MB": memory is not None and memory < 300,
        }
    if scenario == "together" and n == 300:
        return {">=70% of ideal": ratio >= 0.7}
    if scenario == "burst" and n == 500:
        # The model's own latency of the slowest call: the upstream varies by the jitter.
        slowest = row.get("max_s")
        latest = row["latency_s"] + row.get("jitter_s", 0.0) + 1.5
        return {"slowest <= model latency + 1.5 s": slowest is not None and slowest <= latest}
    if scenario == "long-poll" and n == 1000:
        return {">=80% of ideal": ratio >= 0.8}
    return {}
