"""Lua scripts run on Redis: each is hashed once per process, not once per call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.commands.core import Script

_scripts: dict[str, Script] = {}


def script_for(connection: Redis, source: str) -> Script:
    """The Script of `source`, made on first use; run it with `client=` any connection."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = connection.register_script(source)
    return script


def run_script(connection: Redis, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run `source` on `connection` by its SHA1; Redis is sent the source when it lacks it."""
    return script_for(connection, source)(keys=keys, args=args, client=connection)
