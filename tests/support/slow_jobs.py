"""Job functions for worker tests, importable by the worker process (run from the checkout)."""

from __future__ import annotations

import time


def keep_busy(seconds: float) -> str:
    """Run Python code for `seconds`, the way a job stuck in a loop would."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"
