"""Polls of a job this web process queued moments ago, answered without asking Redis."""

from __future__ import annotations

import pytest
from redis import Redis

from studychat.chat.outcomes import outcome_key
from studychat.chat.task_queue import enqueue_chat
from studychat.web.services import services
from tests.support.polling import wait_for
from tests.support.redis_monitor import commands_on
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(60)

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture()
def listening_client(own_app):
    """A test client of an app whose subscription to job updates is up.

    Short polls start it themselves once they mostly come back (test_job_updates.py).
    """
    client = own_app.test_client()
    updates = services(own_app).job_updates
    updates.wait_for("warm-up", 0.01, lambda: False)  # as a long poll would, it subscribes
    wait_for(lambda: updates.listening)
    first = client.post("/chat", json=CHAT).get_json()["jobId"]
    # The origin's first poll is the app's (lean_polls learns its headers from it).
    assert client.post("/check_response", json={"jobId": first}).status_code == 200
    return client


def poll(client, job_id: str) -> dict:
    answer = client.post("/check_response", json={"jobId": job_id})
    assert answer.status_code == 200
    return answer.get_json()


def test_polls_of_a_job_queued_here_ask_redis_nothing_before_its_answer(
    listening_client, connection: Redis
):
    job_id = listening_client.post("/chat", json=CHAT).get_json()["jobId"]
    # No worker runs: the job waits on the queue, and every poll says "processing"...
    with commands_on(connection, job_id) as commands:
        answers = [poll(listening_client, job_id) for _ in range(5)]
    assert answers == [{"processing": True}] * 5
    # ...without a command on the job's keys: the process queued it, and its subscription
    # (up since before) has brought no word of an outcome.
    assert commands == []


def test_a_poll_after_the_workers_message_gets_the_answer(
    listening_client, own_app, own_stack_env, start_worker, upstream, connection: Redis
):
    control(upstream, {"latency": 1.0})
    start_worker(own_stack_env)
    job_id = listening_client.post("/chat", json=CHAT).get_json()["jobId"]
    assert poll(listening_client, job_id) == {"processing": True}
    wait_for(lambda: connection.exists(outcome_key(job_id)))  # the worker stored the answer
    updates = services(own_app).job_updates
    wait_for(lambda: not updates.surely_pending(job_id))  # and its message was heard
    assert "response" in poll(listening_client, job_id)


def test_a_job_queued_through_another_process_is_looked_at(own_app, listening_client, connection):
    made = services(own_app)
    job_id = enqueue_chat(made.queue, CHAT["messages"], None, made.settings)
    with commands_on(connection, job_id) as commands:
        assert poll(listening_client, job_id) == {"processing": True}
    # The one look a poll makes: its script reads the outcome once (MONITOR lists the
    # script's own commands too; the script's first run may take two EVALSHAs).
    assert [command.split()[0].upper() for command in commands].count("HMGET") == 1
