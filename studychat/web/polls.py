"""What a poll of /check_response is answered from, in the app and in the lean path alike."""

from __future__ import annotations

import time

from redis import Redis

from studychat.chat.outcomes import JobState, mark_delivered, take_state
from studychat.web.job_updates import JobUpdates


def poll_outcome(
    connection: Redis, updates: JobUpdates, job_id: str, wait: float
) -> JobState | None:
    """The job's state once it is over, within `wait` seconds; None while it is processing.

    A job this process queued moments ago and has heard nothing of since is processing:
    a poll without `wait` says so without asking Redis (web/job_updates.py).

    An outcome handed back is marked delivered. A paced condition's answer
    (min_reply_seconds) is held back until its release time: the poll sleeps until then
    if that comes within its wait, and says "processing" otherwise.
    """
    if not wait and updates.surely_pending(job_id):
        return None  # queued here moments ago, and not written to since
    deadline = time.monotonic() + wait
    state = updates.wait_for(job_id, wait, lambda: ended_state(connection, job_id))
    if state is None or state.body is None or state.released:
        return state
    if state.held_for > deadline - time.monotonic():
        return None
    time.sleep(state.held_for)
    mark_delivered(connection, state, job_id)
    return state


def ended_state(connection: Redis, job_id: str) -> JobState | None:
    """The job's state once nothing more will happen to it (answered, failed, unknown)."""
    state = take_state(connection, job_id)
    return state if state.over else None
