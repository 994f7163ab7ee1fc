"""Jobs of dead workers run again: a real SIGKILL, and the requeue rules on real Redis."""

from __future__ import annotations

import threading
import time

import pytest
from redis import Redis
from rq.job import JobStatus

from studychat.chat.task_queue import make_queue
from studychat.worker import recovery
from tests.support.chat_helpers import fetch_job, start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import calls_in_flight, control, upstream_requests

pytestmark = pytest.mark.timeout(120)


def test_jobs_of_a_killed_worker_are_answered_by_the_next(
    own_app, own_stack_env, start_worker, upstream, connection
):
    doomed = start_worker(own_stack_env)
    control(upstream, {"faults": [{"delay": 300}] * 4})
    client = own_app.test_client()
    job_ids = start_chats(client, 4)
    wait_for(lambda: calls_in_flight(upstream, connection) == 4)
    doomed.kill()
    killed_at = time.monotonic()
    start_worker(own_stack_env)
    answers = [poll_answer(client, job_id, timeout=60) for job_id in job_ids]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert time.monotonic() - killed_at < 60
    assert len(upstream_requests(upstream)) == 8
    assert {fetch_job(connection, j).meta["recoveries"] for j in job_ids} == {1}


def enqueue_started(connection: Redis, count: int, expired: bool = True) -> list[str]:
    """Jobs that look started by a worker whose heartbeat stopped `expired` ago."""
    queue = make_queue(connection)
    registry = queue.started_job_registry
    ids = []
    for _ in range(count):
        job = queue.enqueue("jobs.run_chat", kwargs={"messages": []})
        connection.lrem(queue.key, 1, job.id)
        job.set_status(JobStatus.STARTED)
        score = time.time() - 5 if expired else time.time() + 60
        connection.zadd(registry.key, {f"{job.id}:exec-{job.id[:6]}": score})
        ids.append(job.id)
    return ids


def test_expired_started_jobs_go_back_to_the_front(connection):
    later = make_queue(connection).enqueue("jobs.run_chat", kwargs={"messages": []})
    ids = enqueue_started(connection, 3)
    alive = enqueue_started(connection, 1, expired=False)
    requeued = recovery.requeue_abandoned([make_queue(connection)], connection)
    assert sorted(requeued) == sorted(ids)
    queue = make_queue(connection)
    assert set(queue.job_ids[:3]) == set(ids)
    assert queue.job_ids[3] == later.id
    assert fetch_job(connection, alive[0]).get_status() == JobStatus.STARTED


def test_two_workers_reaping_at_once_requeue_each_job_once(connection):
    ids = enqueue_started(connection, 50)
    results: list[list[str]] = []

    def reap():
        results.append(recovery.requeue_abandoned([make_queue(connection)], connection))

    threads = [threading.Thread(target=reap) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(job_id for found in results for job_id in found) == sorted(ids)
    assert sorted(make_queue(connection).job_ids) == sorted(ids)


def test_job_lost_between_queue_and_registry_is_requeued(connection):
    queue = make_queue(connection)
    job = queue.enqueue("jobs.run_chat", kwargs={"messages": []})
    # A worker took it (BLMOVE to the intermediate list), then died before registering it.
    connection.lmove(queue.key, queue.intermediate_queue_key)
    assert recovery.requeue_abandoned([queue], connection) == []
    stale = time.time() - recovery.STUCK_AFTER_S - 1
    connection.set(queue.intermediate_queue.get_first_seen_key(job.id), stale)
    assert recovery.requeue_abandoned([queue], connection) == [job.id]
    assert queue.job_ids == [job.id]
    assert connection.llen(queue.intermediate_queue_key) == 0


def test_a_job_that_keeps_killing_workers_is_failed(connection):
    (job_id,) = enqueue_started(connection, 1)
    job = fetch_job(connection, job_id)
    job.meta["recoveries"] = recovery.MAX_RECOVERIES
    job.save_meta()
    queue = make_queue(connection)
    assert recovery.requeue_abandoned([queue], connection) == []
    assert fetch_job(connection, job_id).get_status() == JobStatus.FAILED
    assert queue.failed_job_registry.get_job_ids() == [job_id]
    assert queue.count == 0


def test_finished_job_left_in_registry_is_not_run_again(connection):
    (job_id,) = enqueue_started(connection, 1)
    fetch_job(connection, job_id).set_status(JobStatus.FINISHED)
    assert recovery.requeue_abandoned([make_queue(connection)], connection) == []
    assert make_queue(connection).count == 0
