"""The benchmark chart: throughput and p99 chat-to-answer time against participants."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

logger = logging.getLogger(__name__)

STYLES = {
    "concurrent": {"color": "tab:blue", "marker": "o", "label": "concurrent worker"},
    "stock": {"color": "tab:red", "marker": "s", "label": "stock RQ worker"},
}


def series(rows: Sequence[Mapping[str, Any]], kind: str, key: str) -> tuple[list, list]:
    """(N values, `key` values) of the runs of worker `kind`, ordered by N."""
    chosen = sorted(
        (row for row in rows if row["worker"] == kind and row.get(key) is not None),
        key=lambda row: row["participants"],
    )
    return [row["participants"] for row in chosen], [row[key] for row in chosen]


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
    counts = sorted({row["participants"] for row in rows})
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
    counts = sorted({row["participants"] for row in rows})
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


def draw_chart(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write the two-panel PNG chart of `rows` to `path`."""
    if not rows:
        logger.warning("no runs to chart")
        return
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    draw_throughput(left, rows)
    draw_p99(right, rows)
    first = rows[0]
    figure.suptitle(
        f"{first['turns']} turns per participant, upstream latency {first['latency_s']:g} s, "
        f"polling every {first['poll_s']:g} s, one worker process"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
