"""The chat queue's live state: jobs waiting, jobs running, workers alive."""

from __future__ import annotations

import pytest
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from studychat.chat.queue_state import QueueState, read_queue_state
from studychat.chat.task_queue import QUEUE_NAME
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(120)


def test_jobs_wait_until_a_worker_comes_then_run_and_leave(
    own_app, own_stack_env, start_worker, upstream, connection
):
    assert read_queue_state(connection) == QueueState(waiting=0, running=0, workers_alive=0)
    control(upstream, {"latency": 1.5})
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    assert read_queue_state(connection) == QueueState(waiting=3, running=0, workers_alive=0)
    start_worker(own_stack_env)
    wait_for(lambda: read_queue_state(connection) == QueueState(0, 3, 1), timeout=10)
    for job_id in job_ids:
        assert poll_answer(client, job_id, timeout=30).status_code == 200
    # RQ files each job away a moment after its answer is stored.
    wait_for(lambda: read_queue_state(connection) == QueueState(0, 0, 1), timeout=10)


def test_a_worker_whose_key_expired_is_not_counted(own_stack_env, start_worker, connection):
    start_worker(own_stack_env)
    # What a worker killed outright leaves once its key expires: its registry entry only.
    connection.sadd(WORKERS_BY_QUEUE_KEY % QUEUE_NAME, "rq:worker:killed-long-ago")
    wait_for(lambda: connection.scard(WORKERS_BY_QUEUE_KEY % QUEUE_NAME) == 2, timeout=10)
    assert read_queue_state(connection).workers_alive == 1


def test_a_stopped_worker_is_no_longer_alive(own_stack_env, start_worker, connection):
    worker = start_worker(own_stack_env)
    wait_for(lambda: read_queue_state(connection).workers_alive == 1, timeout=10)
    worker.stop()
    assert read_queue_state(connection).workers_alive == 0
