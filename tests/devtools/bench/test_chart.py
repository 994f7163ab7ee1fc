"""The benchmark chart is a real PNG drawn from the runs' figures."""

from __future__ import annotations

from pathlib import Path

from devtools.bench.chart import draw_chart, series


def row(worker: str, n: int, rate: float, p99: float, cut_off: bool = False) -> dict:
    return {
        "worker": worker,
        "participants": n,
        "answers_per_s": rate,
        "p99_s": p99,
        "latency_lower_bound": cut_off,
        "cut_off": cut_off,
        "latency_s": 2.0,
        "poll_s": 0.5,
        "turns": 5,
    }


ROWS = [
    row("concurrent", 200, 85.0, 2.6),
    row("concurrent", 50, 22.0, 2.5),
    row("stock", 50, 0.45, 60.0, cut_off=True),
]


def test_series_are_ordered_by_participants_per_worker():
    assert series(ROWS, "concurrent", "answers_per_s") == ([50, 200], [22.0, 85.0])
    assert series(ROWS, "stock", "p99_s") == ([50], [60.0])


def test_chart_is_written_as_png(tmp_path: Path):
    path = tmp_path / "chart.png"
    draw_chart(ROWS, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # two panels with lines and legends, not an empty canvas


def test_no_runs_no_chart(tmp_path: Path):
    draw_chart([], tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()
