"""Watching what Redis is asked to do, with its MONITOR command."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

from tests.support.polling import wait_for


@contextmanager
def commands_on(connection: Redis, key: str) -> Iterator[list[str]]:
    """Every command Redis runs on `key` while the block runs (Redis's MONITOR)."""
    seen: list[str] = []
    stop = f"end-of-monitor-{uuid.uuid4()}"
    ready = threading.Event()

    def watch() -> None:
        with connection.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if stop in command["command"]:
                    return
                if key in command["command"]:
                    seen.append(command["command"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    wait_for(lambda: "monitor" in str(connection.client_list()))
    try:
        yield seen
    finally:
        connection.echo(stop)
        thread.join(10)
