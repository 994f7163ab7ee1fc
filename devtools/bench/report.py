"""Figures of a benchmark run, computed from its turn records: pure functions only.

Throughput is the plain count of answers over one window common to every participant,
divided by its length: from the moment the last participant sent its first chat (all
are active) to the moment the first one received its last answer (none has stopped).
Every answer counted is one the service gave while all N were waiting on it, which is
what the ideal N / (latency + poll/2) describes. Summing each participant's own rate
instead (an earlier version did) adds rates over windows that do not coincide, and
overstates a saturated service: at N = 500 it reported more answers per second than two
cores can serve at the measured CPU per answer. `fits_machine` checks every run for
that: answers/s times CPU seconds per answer cannot exceed the cores. The plain rate over
the whole span (first chat to last answer, ramps included) is reported too.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from devtools.bench.load_client import LoadResult, TurnRecord

PERCENTILES = (50, 90, 99)
# A process's CPU time comes in clock ticks of 10 ms, read at both ends of a window of
# 10-30 s for each of six processes: a saturated run can seem to use up to about 1 %
# more than the cores have. The flag is for errors of another size (the summed rates it
# was made for overstated by a quarter).
CPU_TIME_RESOLUTION = 0.01


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) by linear interpolation, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ideal_rate(participants: int, latency_s: float, poll_s: float) -> float:
    """Answers per second if every answer were seen half a poll after the model's latency."""
    return participants / (latency_s + poll_s / 2)


def active_spans(turns: Iterable[TurnRecord], ended: float) -> dict[int, tuple[float, float]]:
    """Per participant: first chat sent, and last answer (or `ended` if one is missing)."""
    spans: dict[int, tuple[float, float]] = {}
    for turn in turns:
        finish = turn.answered if turn.answered is not None else ended
        first, last = spans.get(turn.participant, (turn.started, finish))
        spans[turn.participant] = (min(first, turn.started), max(last, finish))
    return spans


def common_window(result: LoadResult) -> tuple[float, float]:
    """From when every participant is active to when the first one stops.

    With one turn each (a burst) no moment has everyone active and answered: the window
    is then the whole span, first chat to last answer.
    """
    spans = active_spans(result.turns, result.ended)
    if not spans:
        return result.began, result.ended
    if result.plan.turns == 1:
        return min(first for first, _ in spans.values()), max(last for _, last in spans.values())
    return max(first for first, _ in spans.values()), min(last for _, last in spans.values())


def wait_times(result: LoadResult) -> tuple[list[float], bool]:
    """Chat-to-answer seconds of every turn not failed; unanswered ones count until the end.

    The flag says whether any turn was cut off, which makes the high percentiles lower
    bounds of the truth.
    """
    waits, censored = [], False
    for turn in result.turns:
        if turn.error is not None:
            continue
        if turn.answered is None:
            censored = True
            waits.append(result.ended - turn.started)
        else:
            waits.append(turn.answered - turn.started)
    return waits, censored


def throughput(result: LoadResult) -> dict[str, Any]:
    """Answers per second over the common window, and over the whole span."""
    answered = [t.answered for t in result.turns if t.answered is not None]
    first = min((t.started for t in result.turns), default=result.began)
    last = result.ended if result.deadline_hit else max(answered, default=result.ended)
    start, end = common_window(result)
    in_window = sum(1 for moment in answered if start < moment <= end)
    return {
        "answers_per_s": in_window / (end - start) if end > start else 0.0,
        "window_s": max(end - start, 0.0),
        "window_answers": in_window,
        "span_s": last - first,
        "span_answers_per_s": len(answered) / max(last - first, 1e-9),
    }


def cpu_between(
    timeline: Sequence[tuple[float, Mapping[str, float]]], start: float, end: float
) -> dict[str, float]:
    """CPU seconds of each process from `start` to `end`, interpolated between samples."""
    if len(timeline) < 2 or end <= start:
        return {}
    first, last = cpu_at(timeline, start), cpu_at(timeline, end)
    return {name: last[name] - first[name] for name in first}


def cpu_at(
    timeline: Sequence[tuple[float, Mapping[str, float]]], moment: float
) -> dict[str, float]:
    """Each process's CPU seconds so far at `moment` (clamped to the samples' span)."""
    moment = min(max(moment, timeline[0][0]), timeline[-1][0])
    for (t0, cpu0), (t1, cpu1) in itertools.pairwise(timeline):
        if t0 <= moment <= t1:
            share = (moment - t0) / (t1 - t0) if t1 > t0 else 0.0
            return {name: cpu0[name] + share * (cpu1[name] - cpu0[name]) for name in cpu0}
    return dict(timeline[-1][1])


def fits_machine(answers_per_s: float, cpu_ms_per_answer: float, cores: int) -> dict[str, Any]:
    """The cores a rate needs at a CPU cost, and whether the machine has them (to within
    what CPU times can tell: CPU_TIME_RESOLUTION).
    """
    needed = answers_per_s * cpu_ms_per_answer / 1000
    return {"cores_needed": needed, "fits_machine": needed <= cores * (1 + CPU_TIME_RESOLUTION)}


def latency_figures(result: LoadResult) -> dict[str, Any]:
    """Percentiles and maximum of chat-to-answer seconds."""
    waits, censored = wait_times(result)
    figures: dict[str, Any] = {f"p{q}_s": percentile(waits, q) for q in PERCENTILES}
    figures["max_s"] = max(waits, default=None)
    figures["latency_lower_bound"] = censored
    return figures


def summarise(result: LoadResult, latency_s: float) -> dict[str, Any]:
    """Every figure of one run that does not need the processes (rates, latency, requests)."""
    plan = result.plan
    answers = sum(1 for t in result.turns if t.answered is not None)
    errors = Counter(t.error for t in result.turns if t.error is not None)
    requests = sum(t.requests for t in result.turns)
    ideal = ideal_rate(plan.participants, latency_s, plan.poll_s)
    rates = throughput(result)
    return {
        "participants": plan.participants,
        "turns": plan.turns,
        "latency_s": latency_s,
        "poll_s": plan.poll_s,
        "answers": answers,
        "unanswered": plan.participants * plan.turns - answers - sum(errors.values()),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "cut_off": result.deadline_hit,
        **rates,
        "ideal_per_s": ideal,
        "ratio_to_ideal": rates["answers_per_s"] / ideal,
        **latency_figures(result),
        "requests": requests,
        "requests_per_answer": requests / answers if answers else None,
    }


def speedups(rows: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Per N of the spread load run with both workers: concurrent answers/s over stock's."""
    spread = [row for row in rows if row.get("scenario", "spread") == "spread"]
    by_kind = {(row["worker"], row["participants"]): row for row in spread}
    ratios = {}
    for (kind, n), row in by_kind.items():
        stock = by_kind.get(("stock", n))
        if kind == "concurrent" and stock and stock["answers_per_s"] > 0:
            ratios[n] = row["answers_per_s"] / stock["answers_per_s"]
    return ratios


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers rounded, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TABLE_COLUMNS = (
    ("worker", "worker"),
    ("scenario", "load"),
    ("participants", "N"),
    ("answers_per_s", "answers/s"),
    ("ideal_per_s", "ideal/s"),
    ("ratio_to_ideal", "of ideal"),
    ("p50_s", "p50 s"),
    ("p90_s", "p90 s"),
    ("p99_s", "p99 s"),
    ("max_s", "max s"),
    ("requests_per_answer", "req/answer"),
    ("errors", "errors"),
    ("web_peak_rss_mb", "web MB"),
    ("worker_peak_rss_mb", "worker MB"),
)


def cell(row: Mapping[str, Any], key: str) -> str:
    """One table cell; a percentile that is only a lower bound gets a '>=' in front."""
    text = fmt(row.get(key), 0 if key.endswith("_mb") else 2)
    if key in ("p90_s", "p99_s", "max_s") and row.get("latency_lower_bound"):
        return ">=" + text
    if key == "ratio_to_ideal" and row.get(key) is not None:
        return f"{row[key]:.0%}"
    if key == "worker" and row.get("worker_processes", 1) > 1:
        return f"{text} x{row['worker_processes']}"
    if key == "scenario":
        return scenario_label(row)
    return text


def scenario_label(row: Mapping[str, Any]) -> str:
    """The load's name, marked when its participants chatted in study sessions."""
    name = str(row.get("scenario", "spread"))
    return f"{name} (sessions)" if row.get("sessions") else name


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The main figures of every run as a Markdown table."""
    lines = [
        "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    for row in rows:
        cells = [cell(row, key) for key, _ in TABLE_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CPU_PROCESSES = ("web", "worker", "redis", "mongo", "upstream", "bench", "all")


def mongo_operations(row: Mapping[str, Any]) -> str:
    """MongoDB reads and writes per answer as a cell; a dash for runs that did not count them."""
    per_answer = row.get("mongo_ops_per_answer")
    return "-" if per_answer is None else fmt(float(sum(per_answer.values())), 2)


def cpu_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Where the CPU went: ms per answer of each process, and what else ran on the machine."""
    titles = [f"{name} ms" for name in CPU_PROCESSES]
    lines = [
        "| worker | load | N | " + " | ".join(titles) + " | machine busy | others' CPU s "
        "| reference ms | model calls at once (WORKER_CONCURRENCY) | Redis commands per answer "
        "| Redis reads per answer | MongoDB operations per answer |",
        "|" + "---|" * (len(titles) + 10),
    ]
    for row in rows:
        per_answer = row.get("cpu_ms_per_answer") or {}
        cells = [fmt(per_answer.get(name), 1) for name in CPU_PROCESSES]
        busy = row.get("machine_cpu_busy")
        lines.append(
            f"| {cell(row, 'worker')} | {scenario_label(row)} | {row['participants']} | "
            + " | ".join(cells)
            + " | "
            f"{'-' if busy is None else f'{busy:.0%}'} | {fmt(row.get('others_cpu_s'), 0)} | "
            f"{fmt(row.get('reference_ms'), 0)} | {fmt(row.get('upstream_max_in_flight'))} "
            f"({fmt(row.get('worker_concurrency'))}) | "
            f"{fmt(row.get('redis_commands_per_answer'), 1)} | "
            f"{fmt(row.get('redis_reads_per_answer'), 1)} | {mongo_operations(row)} |"
        )
    return "\n".join(lines)
