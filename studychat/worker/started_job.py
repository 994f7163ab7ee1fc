"""The concurrent worker's job class: RQ's Job, run without a round trip of its own.

RQ's `Job.perform` begins with PERSIST on the job's key, so that a job enqueued with a
TTL does not expire while it runs: one round trip per job, about a twentieth of the
worker's CPU per answer in the benchmark's long poll (docs/benchmark.md). The concurrent
worker sends that command in the transaction that records its jobs as started, so this
class runs a job as `Job.perform` does, less that command. rq_internals names the parts
of RQ it mirrors, and a contract test compares it with the installed RQ's.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job, _job_stack


class StartedJob(Job):
    """A job whose key the worker made persistent when it recorded the job as started."""

    def perform(self) -> Any:
        """Run the job's function as `get_current_job()`'s job; its result."""
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            assert self is _job_stack.pop()
        return self._result
