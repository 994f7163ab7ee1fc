"""Taking waiting jobs in one round trip leaves Redis as RQ's own dequeue leaves it."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from studychat.chat.task_queue import SERIALIZER
from studychat.worker import job_batches

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def queue(connection: Redis) -> Queue:
    return Queue("batches", connection=connection, serializer=SERIALIZER)


def enqueue(queue: Queue, count: int) -> list[str]:
    jobs = [
        queue.enqueue("studychat.chat.jobs.run_chat", kwargs={"messages": [{"n": n}]})
        for n in range(count)
    ]
    return [job.id for job in jobs]


def take(queue: Queue, limit: int) -> list[Job]:
    script = job_batches.take_script(queue.connection)
    return job_batches.take_waiting(script, queue, limit, Job)


def test_takes_at_most_the_limit_in_queue_order(queue):
    queued = enqueue(queue, 5)
    assert [job.id for job in take(queue, 3)] == queued[:3]
    assert queue.get_job_ids() == queued[3:]
    assert [job.id for job in take(queue, 3)] == queued[3:]
    assert take(queue, 3) == []


def test_a_taken_job_is_where_and_as_rqs_dequeue_leaves_it(queue, connection):
    by_rq_id, by_batch_id = enqueue(queue, 2)
    by_rq, _ = Queue.dequeue_any([queue], None, connection=connection, serializer=SERIALIZER)
    [by_batch] = take(queue, 5)
    assert (by_rq.id, by_batch.id) == (by_rq_id, by_batch_id)
    # Both wait in the intermediate list, where recovery looks for jobs lost in between.
    assert queue.intermediate_queue.get_job_ids() == [by_rq_id, by_batch_id]
    assert by_batch.to_dict() == Job.fetch(by_batch_id, connection, SERIALIZER).to_dict()
    assert by_batch.kwargs == {"messages": [{"n": 1}]}
    assert set(by_batch.to_dict()) == set(by_rq.to_dict())


def test_a_job_whose_hash_is_gone_is_skipped_and_left_for_recovery(queue, connection):
    gone, kept = enqueue(queue, 2)
    connection.delete(Job.key_for(gone))
    assert [job.id for job in take(queue, 5)] == [kept]
    assert queue.intermediate_queue.get_job_ids() == [gone, kept]


def test_a_job_waited_for_comes_first_with_those_waiting_behind_it(queue):
    queued = enqueue(queue, 3)
    first = job_batches.wait_for_one(queue, timeout=1)
    assert first == queued[0]
    script = job_batches.take_script(queue.connection)
    taken = job_batches.take_waiting(script, queue, 2, Job, first=first)
    assert [job.id for job in taken] == queued[:2]
    assert queue.get_job_ids() == queued[2:]
    assert queue.intermediate_queue.get_job_ids() == queued[:2]


def test_waiting_on_an_empty_queue_gives_nothing_after_the_timeout(queue):
    assert job_batches.wait_for_one(queue, timeout=1) is None
    assert take(queue, 5) == []
