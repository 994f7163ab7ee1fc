"""Balanced assignment: the n-th participant of a study gets the n-th slot of a fixed schedule.

A counter in MongoDB hands out sequence numbers atomically (`$inc`), so any number of
web processes creating sessions at the same moment never share a number. The schedule
repeats every `sum(weights)` slots and is built greedily: each slot goes to the
condition furthest below its weighted share. After any number of assignments each
condition's count is therefore within 1 of its share, and after a whole number of
cycles it is exact (2 equal conditions: 50/50 of 100; weights 2:1: 60/30 of 90).

The counter is keyed by the study's name and weights: editing a prompt keeps the
balance going, while changing the conditions or their weights starts a new schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from pymongo import ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from studychat.store.database import ASSIGNMENTS_COLLECTION


def schedule(weights: Mapping[str, int]) -> list[str]:
    """One cycle of conditions: `sum(weights)` slots, each condition `weight` times, spread."""
    total = sum(weights.values())
    given = dict.fromkeys(weights, 0)
    slots = []
    for slot in range(1, total + 1):
        # The condition furthest below its share after this slot; ties go to file order.
        chosen = max(weights, key=lambda name: slot * weights[name] / total - given[name])
        given[chosen] += 1
        slots.append(chosen)
    return slots


def counter_key(study_name: str, weights: Mapping[str, int]) -> str:
    """The id of the counter a study with these conditions and weights draws from."""
    return study_name + "|" + ",".join(f"{name}:{weight}" for name, weight in weights.items())


def next_condition(db: Database, study_name: str, weights: Mapping[str, int]) -> str:
    """The condition of the next participant, drawn atomically from the study's counter."""
    counters = db[ASSIGNMENTS_COLLECTION]
    key = counter_key(study_name, weights)
    # Created first, then incremented: an upserting increment can, under a race at the
    # counter's creation, hand two callers the same number (SecantusDB) or fail one.
    with contextlib.suppress(DuplicateKeyError):
        counters.insert_one({"_id": key, "assigned": 0})
    counter = counters.find_one_and_update(
        {"_id": key}, {"$inc": {"assigned": 1}}, return_document=ReturnDocument.AFTER
    )
    if counter is None:
        raise PyMongoError(f"the assignment counter {key!r} vanished")
    cycle = schedule(weights)
    return cycle[(counter["assigned"] - 1) % len(cycle)]
