"""The event loop of the benchmark's load generator and fake upstream: uvloop where installed.

Both share the machine's two cores with the service they measure, so every millisecond
of CPU they spend is one the service under test does not get. uvloop runs the same
asyncio code on libuv at a fraction of the standard loop's CPU per request; where it is
not installed (Windows), asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop has no Windows build
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")


def loop_factory(fast: bool = True) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when `fast` and it is installed; None means asyncio's default."""
    return uvloop.new_event_loop if fast and uvloop is not None else None


def run(main: Coroutine[Any, Any, T], fast: bool = True) -> T:
    """Run `main` to completion on a new loop (see loop_factory), as asyncio.run does."""
    with asyncio.Runner(loop_factory=loop_factory(fast)) as runner:
        return runner.run(main)
