"""The benchmark chart: throughput and p99 chat-to-answer time against participants."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt

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
    axes.set(xlabel="participants (N)", ylabel="answers per second", title="Throughput")
    axes.legend()
    axes.grid(alpha=0.3)


def draw_p99(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """p99 chat-to-answer seconds per worker kind (log scale), and the target."""
    counts = sorted({row["participants"] for row in rows})
    target = rows[0]["latency_s"] + 1
    axes.plot(counts, [target] * len(counts), "k:", label="target: latency + 1 s")
    for kind, style in STYLES.items():
        xs, ys = series(rows, kind, "p99_s")
        if xs:
            axes.plot(xs, ys, **style)
        for row in rows:
            if row["worker"] == kind and row.get("latency_lower_bound") and row.get("p99_s"):
                axes.annotate(
                    "cut off: at least",
                    (row["participants"], row["p99_s"]),
                    textcoords="offset points",
                    xytext=(6, -12),
                    fontsize=8,
                )
    axes.set_yscale("log")
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
