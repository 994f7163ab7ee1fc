"""Which jobs a web process queued, and whether its requests come back to it.

Each web process subscribes to the worker's messages about the jobs it queued itself
(web/job_updates.py). That pays where a participant's requests come back to the process
that took their chat, as when browsers keep their connection to gunicorn open. It pays
less, or not at all, where a router spreads requests over processes (docs/benchmark.md,
"Sixteenth round" and "Seventeenth round"). So a process counts, over samples of
requests, how many were for jobs it queued:

- short polls start its subscription only once most of a sample came back here (a poll
  of a job queued here moments ago is then answered without asking Redis);
- long polls and streams, which start it regardless, make it hear every job's messages
  instead of its own only, once most of a sample were for jobs queued elsewhere.
"""

from __future__ import annotations

# Jobs queued here that a request is recognised by, at most: the most recent ones (at
# 300 answers a second, a minute's worth; a job is asked about within seconds).
RECENT_KEPT = 20_000
# Requests counted before deciding; a sample that decides nothing starts a new one.
SAMPLE_POLLS = 200
SAMPLE_WAITS = 50
# The share of a sample's requests that must be for jobs queued here.
SHARE_COMING_BACK = 0.8


class QueuedHere:
    """The jobs this process queued most recently (not thread-safe)."""

    def __init__(self, kept: int = RECENT_KEPT) -> None:
        self.kept = kept
        self._recent: dict[str, None] = {}

    def add(self, job_id: str) -> None:
        """Note a job this process queued."""
        self._recent[job_id] = None
        if len(self._recent) > self.kept:
            del self._recent[next(iter(self._recent))]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._recent


class ReturningShare:
    """Counts, over samples of requests, those for jobs this process queued (not thread-safe)."""

    def __init__(self, sample: int, share: float = SHARE_COMING_BACK) -> None:
        self.sample = sample
        self.share = share
        self._requests = 0
        self._returning = 0

    def count(self, returning: bool) -> bool | None:
        """Count a request; at the end of a sample, whether most came back here; else None."""
        self._requests += 1
        self._returning += returning
        if self._requests < self.sample:
            return None
        mostly = self._returning >= self.share * self._requests
        self._requests = self._returning = 0
        return mostly
