"""Lua scripts hashed once per process still run on a Redis that has forgotten them."""

from __future__ import annotations

import pytest
from redis import Redis

from studychat.redis_scripts import run_script, script_for

pytestmark = pytest.mark.timeout(60)

INCREMENT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_a_script_runs_and_is_made_once(connection: Redis):
    assert run_script(connection, INCREMENT, keys=["counter"], args=[2]) == 2
    assert run_script(connection, INCREMENT, keys=["counter"], args=[3]) == 5
    assert script_for(connection, INCREMENT) is script_for(connection, INCREMENT)


def test_a_script_runs_after_redis_forgot_it(connection: Redis, own_redis):
    run_script(connection, INCREMENT, keys=["counter"], args=[1])
    connection.script_flush()
    assert run_script(connection, INCREMENT, keys=["counter"], args=[1]) == 2


def test_one_script_serves_every_connection(connection: Redis, redis_server):
    other = Redis.from_url(redis_server.url)
    try:
        other.delete("counter")
        assert run_script(other, INCREMENT, keys=["counter"], args=[4]) == 4
        assert run_script(connection, INCREMENT, keys=["counter"], args=[4]) == 4
    finally:
        other.delete("counter")
        other.close()
