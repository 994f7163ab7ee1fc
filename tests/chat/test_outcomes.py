"""Where answers are kept: the stored body, and reading a job's state in one round trip."""

from __future__ import annotations

import json
import uuid

import pytest
from redis import Redis

from studychat.chat.outcomes import JobState, read_state, store_outcome, success_body


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
