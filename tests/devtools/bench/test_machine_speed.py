"""The reference loop measures CPU time, in proportion to the work asked."""

from __future__ import annotations

from devtools.bench.machine_speed import reference_ms


def test_more_iterations_take_more_cpu():
    short = min(reference_ms(100_000) for _ in range(3))
    long = min(reference_ms(1_000_000) for _ in range(3))
    assert 0 < short < long
