"""How fast this machine's cores are right now: the CPU time of a fixed piece of Python.

A virtual machine gives the same code different speeds from one minute to the next, as
its host's other guests come and go: on the development machine this loop took from 187
to 311 ms between benchmark runs within 20 minutes, with nothing else of ours running.
CPU per answer moves with it. Each run records the loop's time just before it starts,
so that two runs can be compared: figures from a slower moment carry a higher reference.
"""

from __future__ import annotations

import time

# Iterations of the reference loop: about half a second of one core.
REFERENCE_LOOP = 3_000_000


def reference_ms(iterations: int = REFERENCE_LOOP) -> float:
    """CPU milliseconds this process needs for the reference loop now."""
    start = time.process_time()
    total = 0
    for number in range(iterations):
        total += number * number
    return (time.process_time() - start) * 1000
