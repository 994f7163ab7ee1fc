"""The assignment schedule: balanced by weight after any number of participants."""

from __future__ import annotations

from collections import Counter

import pytest

from studychat.study.assignment import schedule


@pytest.mark.parametrize(
    "weights",
    [{"a": 1, "b": 1}, {"a": 2, "b": 1}, {"a": 3, "b": 2, "c": 1}, {"a": 1, "off": 0, "b": 4}],
)
def test_every_prefix_is_within_one_of_its_weighted_share(weights):
    total = sum(weights.values())
    slots = schedule(weights) * 3
    for n in range(1, len(slots) + 1):
        counts = Counter(slots[:n])
        for name, weight in weights.items():
            assert abs(counts[name] - n * weight / total) < 1, (n, name)


def test_a_whole_cycle_gives_each_condition_its_weight_exactly():
    assert Counter(schedule({"a": 2, "b": 1})) == {"a": 2, "b": 1}
    assert "off" not in schedule({"a": 1, "off": 0})
