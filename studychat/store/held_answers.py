"""Answers the transcript shipper holds back a moment, to write each with its delivery note.

A job's transcript entry goes to the stream when its answer is stored; the note of its
delivery follows when the participant's client gets the answer, a poll later. Shipped
in different batches they cost two writes of the transcript and, for a study session,
two of its conversation; in one batch they cost one of each. So an answer whose note is
not in the batch stays unacknowledged in Redis (where a dead shipper's entries are taken
over as ever) and is read again with the next batch, for at most HOLD_S; an answer
never fetched is shipped alone after that.
"""

from __future__ import annotations

import time
from typing import Any

# How long an answer waits for its delivery note: a poll's interval and the shipper's
# pause between batches, with room to spare. Its transcript reaches MongoDB this much
# later at most.
HOLD_S = 3.0

# A stream entry's id, its fields, and its document.
Entry = tuple[bytes, dict, dict[str, Any]]


class HeldAnswers:
    """Which entries wait for their delivery note, since when on this shipper's clock."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._since: dict[bytes, float] = {}

    def holds_all(self, entries: list[tuple[bytes, dict]]) -> bool:
        """Whether every one of these entries is held (the batch needs the ones after)."""
        return bool(entries) and all(entry_id in self._since for entry_id, _ in entries)

    def forget(self) -> None:
        """Nothing is held any more (this shipper has no unacknowledged entries)."""
        self._since.clear()

    def ready(self, batch: list[Entry]) -> list[Entry]:
        """The entries to ship now: all but answers whose note is still to come."""
        noted = {document["_id"] for _, _, document in batch if document.get("patch")}
        now, ready = time.monotonic(), []
        for entry in batch:
            entry_id, _, document = entry
            if document.get("patch") or document["_id"] in noted or self._over(entry_id, now):
                self._since.pop(entry_id, None)
                ready.append(entry)
        return ready

    def _over(self, entry_id: bytes, now: float) -> bool:
        """Whether the answer has waited its time (its wait starts when first seen)."""
        return now - self._since.setdefault(entry_id, now) >= self.hold_s
