"""Waiting on a condition with a deadline instead of a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Call `probe` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {probe!r}")
        time.sleep(interval)


def poll_answer(client, job_id: str, timeout: float = 20.0):
    """Poll /check_response like a frontend until the job is no longer processing."""

    def probe():
        answer = client.post("/check_response", json={"jobId": job_id})
        if answer.status_code == 200 and answer.get_json() == {"processing": True}:
            return None
        return answer

    return wait_for(probe, timeout=timeout, interval=0.05)
