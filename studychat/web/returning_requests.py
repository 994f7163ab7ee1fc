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
# Requests a decision rests on; after a sample that did not mostly come back, a new one
# starts. A sample decides as soon as its rest could not change the outcome: with 50
# polls, at the 40th that came back, or at the 11th that did not. Until the subscription
# starts, every short poll asks Redis, a round trip under gevent: with samples of 200 a
# process at N = 100 subscribed about 3 s after its first poll, and the jobs queued until
# then were asked about on every poll until answered. Behind a router spreading requests
# over two processes (half come back), 40 of 50 happen by chance once in about 80,000
# samples (hours of polls at a hundred a second), and a subscription started so costs
# about what it saves (docs/benchmark.md, "Sixteenth round").
SAMPLE_POLLS = 50
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
        """Count a request; once the sample's share is certain, whether most came back
        here (and a new sample starts); else None.

        Certain once enough came back that the rest of the sample could not bring the
        share below `share`, or so few that the rest could not bring it up to it.
        """
        self._requests += 1
        self._returning += returning
        needed = self.share * self.sample
        if self._returning >= needed:
            mostly = True
        elif self._returning + self.sample - self._requests < needed:
            mostly = False
        else:
            return None
        self._requests = self._returning = 0
        return mostly
