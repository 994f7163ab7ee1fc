"""Whether a web process's polls come back to it: the case its subscription pays for.

A poll of a job its own process queued moments ago is answered without asking Redis
(`JobUpdates.surely_pending`), but only while the process holds its subscription to job
updates, which costs it CPU for every answer of the whole service (about a tenth of the
web's in the benchmark). That pays where a participant's requests come back to the
process that took their chat, as when browsers keep their connection to gunicorn open
(the web's CPU per answer 7 % lower); it comes out about even where a router spreads
requests over two processes, and worse over more (docs/benchmark.md, "Sixteenth
round"). So for its polls a process starts the subscription only once most polls of a
sample were of jobs it queued itself. Long polls and streams start it regardless.
"""

from __future__ import annotations

# Polls counted before deciding; a sample that falls short starts a new one.
SAMPLE_POLLS = 200
# The share of a sample's polls that must be of jobs queued here.
SHARE_COMING_BACK = 0.8
# Jobs queued here that a poll is recognised by, at most: the most recent ones.
RECENT_KEPT = 2_000


class ReturningPolls:
    """Counts, over samples of polls, those of jobs this process queued (not thread-safe)."""

    def __init__(self, sample: int = SAMPLE_POLLS, share: float = SHARE_COMING_BACK) -> None:
        self.sample = sample
        self.share = share
        self._recent: dict[str, None] = {}
        self._polls = 0
        self._returning = 0

    def queued(self, job_id: str) -> None:
        """Note a job this process queued."""
        self._recent[job_id] = None
        if len(self._recent) > RECENT_KEPT:
            del self._recent[next(iter(self._recent))]

    def polled(self, job_id: str) -> bool:
        """Count a poll; True at the end of a sample whose polls mostly came back here."""
        self._polls += 1
        self._returning += job_id in self._recent
        if self._polls < self.sample:
            return False
        enough = self._returning >= self.share * self._polls
        self._polls = self._returning = 0
        return enough
