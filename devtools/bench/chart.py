"""The benchmark chart: throughput and p99 against participants, the other loads, CPU."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from devtools.bench.report import scenario_label
from devtools.bench.scenarios import CPU_GOAL_MS, SERVER_PROCESSES

logger = logging.getLogger(__name__)

STYLES = {
    "concurrent": {"color": "tab:blue", "marker": "o", "label": "concurrent worker"},
    "stock": {"color": "tab:red", "marker": "s", "label": "stock RQ worker"},
}


def series(rows: Sequence[Mapping[str, Any]], kind: str, key: str) -> tuple[list, list]:
    """(N values, `key` values) of the runs of worker `kind`, ordered by N."""
    chosen = sorted(
        (row for row in spread_runs(rows) if row["worker"] == kind and row.get(key) is not None),
        key=lambda row: row["participants"],
    )
    return [row["participants"] for row in chosen], [row[key] for row in chosen]


def spread_runs(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The runs of the spread load, the one the curves against N describe."""
    return [row for row in rows if row.get("scenario", "spread") == "spread"]


def log_scale(axes: Any) -> None:
    """A logarithmic y axis labelled 1, 2, 3, 5, 10, 20, ... in plain numbers."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.yaxis.set_minor_formatter(NullFormatter())


def label_lower_bounds(axes: Any, rows: Sequence[Mapping[str, Any]], key: str, text: str) -> None:
    """Mark the points of runs stopped at their time limit."""
    for row in rows:
        if row.get("cut_off") and row.get(key):
            axes.annotate(text, (row["participants"], row[key]), textcoords="offset points",
                          xytext=(8, -4), fontsize=8)  # fmt: skip


def draw_throughput(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Answers per second per worker kind, and the ideal rate."""
    counts = sorted({row["participants"] for row in spread_runs(rows)})
    first = rows[0]
    ideal = [n / (first["latency_s"] + first["poll_s"] / 2) for n in counts]
    axes.plot(counts, ideal, "k--", label="ideal N / (latency + poll/2)")
    for kind, style in STYLES.items():
        xs, ys = series(rows, kind, "answers_per_s")
        if xs:
            axes.plot(xs, ys, **style)
    label_lower_bounds(axes, rows, "answers_per_s", "cut off")
    log_scale(axes)  # the stock worker's rate is a hundredth of the others
    axes.set(xlabel="participants (N)", ylabel="answers per second (log scale)", title="Throughput")
    axes.legend()
    axes.grid(alpha=0.3, which="both")


def draw_p99(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """p99 chat-to-answer seconds per worker kind (log scale), and the target."""
    counts = sorted({row["participants"] for row in spread_runs(rows)})
    target = rows[0]["latency_s"] + 1
    axes.plot(counts, [target] * len(counts), "k:", label="target: latency + 1 s")
    for kind, style in STYLES.items():
        xs, ys = series(rows, kind, "p99_s")
        if xs:
            axes.plot(xs, ys, **style)
    label_lower_bounds(axes, rows, "p99_s", "at least (cut off)")
    log_scale(axes)
    axes.set(xlabel="participants (N)", ylabel="seconds (log scale)", title="p99 chat to answer")
    axes.legend()
    axes.grid(alpha=0.3, which="both")


def draw_other_loads(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """p99 and slowest answer of the loads other than spread, against latency + 1.5 s."""
    others = [row for row in rows if row["worker"] == "concurrent" and row not in spread_runs(rows)]
    labels = [f"{scenario_label(row)}\nN={row['participants']}" for row in others]
    places = range(len(others))
    axes.bar([x - 0.2 for x in places], [row.get("p99_s") or 0 for row in others], 0.4, label="p99")
    axes.bar(
        [x + 0.2 for x in places], [row.get("max_s") or 0 for row in others], 0.4, label="slowest"
    )
    first = rows[0]
    goal = first["latency_s"] + first.get("jitter_s", 0.0) + 1.5
    axes.axhline(goal, color="k", linestyle=":", label="burst goal: model latency + 1.5 s")
    axes.set_xticks(list(places), labels)
    axes.set(ylabel="seconds chat to answer", title="Starting together, a burst, long polls")
    axes.legend()
    axes.grid(alpha=0.3, axis="y")


def draw_cpu(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """CPU ms per answer of each server process, stacked, per spread run (concurrent worker)."""
    chosen = sorted(series_rows(rows), key=lambda row: row["participants"])
    places = range(len(chosen))
    bottom = [0.0] * len(chosen)
    for name in SERVER_PROCESSES:
        heights = [(row.get("cpu_ms_per_answer") or {}).get(name, 0.0) for row in chosen]
        axes.bar(list(places), heights, 0.6, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.axhline(CPU_GOAL_MS, color="k", linestyle=":", label=f"goal: {CPU_GOAL_MS:g} ms")
    axes.set_xticks(list(places), [f"N={row['participants']}" for row in chosen])
    axes.set(ylabel="CPU ms per answer", title="Server CPU per answer (spread load)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, axis="y")


def series_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The concurrent worker's spread runs that measured CPU."""
    return [
        row
        for row in spread_runs(rows)
        if row["worker"] == "concurrent" and row.get("cpu_ms_per_answer")
    ]


def draw_chart(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write the four-panel PNG chart of `rows` to `path`."""
    if not rows:
        logger.warning("no runs to chart")
        return
    figure, ((left, right), (low_left, low_right)) = plt.subplots(2, 2, figsize=(12, 9))
    draw_throughput(left, rows)
    draw_p99(right, rows)
    draw_other_loads(low_left, rows)
    draw_cpu(low_right, rows)
    first = spread_runs(rows)[0] if spread_runs(rows) else rows[0]
    figure.suptitle(
        f"Spread load: {first['turns']} turns per participant; upstream latency "
        f"{first['latency_s']:g} s; polling every {first['poll_s']:g} s; one worker process"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
