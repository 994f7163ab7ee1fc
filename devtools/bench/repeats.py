"""A load run several times in one benchmark, reported as its median run.

The server CPU per answer of spread N = 100 moves by a third or more between runs of
the same code on this machine (7.2 to 10.8 ms in one hour, 8.5 to 11.3 in another), so
one run's verdict on its goal says more about the moment than about the code. `make
bench` therefore runs that load several times (`--cpu-runs`) and reports the run with
the median server CPU, with every run's figures beside it. The median is a real run,
not an average, so its rate, CPU and Redis counts still belong together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from devtools.bench.scenarios import SERVER_PROCESSES, goals, server_cpu_ms

NO_ERRORS = "no errors"


def run_key(row: Mapping[str, Any]) -> tuple[str, str, int, bool]:
    """What makes two runs the same load: worker kind, shape, N, sessions or not."""
    scenario = row.get("scenario", "spread")
    return (row["worker"], scenario, row["participants"], bool(row.get("sessions")))


def fold_repeats(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per load, in the order run; a repeated load becomes its median run."""
    groups: dict[tuple[str, str, int, bool], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(run_key(row), []).append(row)
    return [median_run(group) if len(group) > 1 else dict(group[0]) for group in groups.values()]


def median_run(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The run with the median server CPU per answer (the higher middle of an even count).

    Its goals are its own, except that every run must have been free of errors.
    """
    ordered = sorted(runs, key=lambda row: server_cpu_ms(row) or 0.0)
    row = dict(ordered[len(ordered) // 2])
    row["repeats"] = [repeat_figures(run) for run in runs]
    row["targets"] = goals(row)
    if NO_ERRORS in row["targets"]:
        clean = all(run["errors"] == 0 and run["unanswered"] == 0 for run in runs)
        row["targets"][NO_ERRORS] = clean
    return row


def repeat_figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """What one of the runs of a repeated load measured, for the JSON and the summary."""
    per_answer = row.get("cpu_ms_per_answer") or {}
    return {
        "server_cpu_ms": server_cpu_ms(row),
        "cpu_ms_per_answer": {name: per_answer.get(name) for name in SERVER_PROCESSES},
        "answers_per_s": row["answers_per_s"],
        "errors": row["errors"],
        "reference_ms": row.get("reference_ms"),
    }


def repeats_line(label: str, row: Mapping[str, Any]) -> str | None:
    """A summary line giving each run's server CPU of a repeated load, or None."""
    repeats = row.get("repeats")
    if not repeats:
        return None
    figures = ", ".join(f"{run['server_cpu_ms'] or 0:.1f}" for run in repeats)
    median = server_cpu_ms(row) or 0.0
    return (
        f"- {label} ran {len(repeats)} times; server CPU ms per answer: {figures}"
        f" (the tables show the median run, {median:.1f})."
    )
