"""Where answers are kept: the stored body, and reading a job's state in one round trip."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from redis import Redis

from studychat.chat.outcomes import (
    DELIVERED,
    JobState,
    outcome_key,
    read_state,
    seen_at_start,
    store_outcome,
    stored_before_run,
    success_body,
    take_state,
)
from studychat.store.chat_log import STREAM


def test_success_body_splices_the_upstream_json_untouched():
    raw = '{"id":"chatcmpl-1","choices":[],"usage":{"total_tokens":3}}'
    body = success_body(raw)
    assert json.loads(body) == {"response": json.loads(raw)}
    assert raw in body


@pytest.mark.parametrize(
    ("state", "over"),
    [
        (JobState(200, b"{}", "finished"), True),
        (JobState(None, None, "failed"), True),
        (JobState(None, None, None), True),
        (JobState(None, None, "queued"), False),
        (JobState(None, None, "started"), False),
    ],
)
def test_a_job_is_over_once_answered_failed_or_gone(state, over):
    assert state.over is over


def test_read_state_gives_the_stored_answer_and_its_code(redis_server):
    connection = Redis.from_url(redis_server.url)
    job_id = str(uuid.uuid4())
    assert read_state(connection, job_id) == JobState(None, None, None)
    with connection.pipeline() as pipeline:
        store_outcome(pipeline, job_id, 502, '{"error": "x"}', ttl=60)
        pipeline.execute()
    assert read_state(connection, job_id) == JobState(502, b'{"error": "x"}', None)
    assert 0 < connection.ttl("chat:outcome:" + job_id) <= 60
    connection.close()


def stored(connection: Redis, release_at: float | None = None) -> str:
    """A job id whose answer is stored, held back until `release_at` if given."""
    job_id = str(uuid.uuid4())
    extra = {"release": repr(release_at)} if release_at is not None else None
    with connection.pipeline() as pipeline:
        store_outcome(pipeline, job_id, 200, '{"response": {}}', ttl=60, extra=extra)
        pipeline.execute()
    return job_id


def deliveries(connection: Redis, job_id: str) -> int:
    """Delivery notes of `job_id` waiting in the chat log's stream.

    Tests that count them use their own Redis: the session's worker ships (and deletes)
    the shared Redis's entries at any moment.
    """
    return sum(job_id in fields[b"doc"].decode() for _, fields in connection.xrange(STREAM))


def test_take_state_marks_a_released_answer_delivered_once(connection):
    job_id = stored(connection)
    taken = take_state(connection, job_id)
    assert (taken.status_code, taken.body, taken.delivered) == (200, b'{"response": {}}', True)
    stamp = connection.hget(outcome_key(job_id), DELIVERED)
    assert stamp is not None
    assert take_state(connection, job_id).delivered
    assert connection.hget(outcome_key(job_id), DELIVERED) == stamp
    assert deliveries(connection, job_id) == 1


def test_take_state_leaves_a_held_back_answer_undelivered(connection):
    job_id = stored(connection, release_at=time.time() + 60)
    taken = take_state(connection, job_id)
    assert taken.body == b'{"response": {}}'
    assert not taken.released
    assert not taken.delivered
    assert connection.hget(outcome_key(job_id), DELIVERED) is None
    assert deliveries(connection, job_id) == 0
    assert take_state(connection, str(uuid.uuid4())) == JobState(None, None, None)


def test_whether_an_earlier_run_answered_is_asked_of_redis_unless_seen_at_start(redis_server):
    connection = Redis.from_url(redis_server.url)
    answered, fresh = stored(connection), str(uuid.uuid4())
    # A worker that did not look (RQ's own `rq worker`): Redis is asked.
    assert stored_before_run(connection, answered) is True
    assert stored_before_run(connection, fresh) is False
    # The concurrent worker looked when it started the job: its look holds for that job only.
    with seen_at_start(fresh, True):
        assert stored_before_run(connection, fresh) is True
        assert stored_before_run(connection, answered) is True
    assert stored_before_run(connection, fresh) is False
    connection.close()
