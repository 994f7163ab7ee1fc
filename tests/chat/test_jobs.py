"""jobs.run_chat in a real worker: retries, timeouts, result lifetime, reruns."""

from __future__ import annotations

import pytest

from studychat.chat.outcomes import outcome_key
from studychat.chat.task_queue import make_queue
from tests.support.chat_helpers import fetch_job, start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import control, upstream_requests

pytestmark = pytest.mark.timeout(120)


def one_answer(app):
    client = app.test_client()
    (job_id,) = start_chats(client, 1)
    return job_id, poll_answer(client, job_id, timeout=60)


def test_rate_limited_call_is_retried_after_retry_after(
    own_app, own_stack_env, start_worker, upstream
):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"status": 429, "retry_after": 1}] * 2})
    _, answer = one_answer(own_app)
    assert answer.status_code == 200
    assert len(upstream_requests(upstream)) == 3


def test_rate_limited_for_good_is_a_502_sentence(own_app, own_stack_env, start_worker, upstream):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"status": 429, "retry_after": 0}] * 3})
    _, answer = one_answer(own_app)
    assert answer.status_code == 502
    assert answer.get_json() == {
        "error": "The model service rate-limited this request after 3 attempts."
    }


def test_upstream_that_never_answers_is_cut_off(own_app, own_stack_env, start_worker, upstream):
    start_worker(own_stack_env | {"LLM_TIMEOUT_S": "1", "LLM_MAX_RETRIES": "1"})
    control(upstream, {"faults": [{"hang": True}] * 2})
    _, answer = one_answer(own_app)
    assert answer.status_code == 502
    assert answer.get_json()["error"] == (
        "The model service did not answer in time after 2 attempts."
    )


def test_hang_then_answer_succeeds_on_retry(own_app, own_stack_env, start_worker, upstream):
    start_worker(own_stack_env | {"LLM_TIMEOUT_S": "1"})
    control(upstream, {"faults": [{"hang": True}]})
    _, answer = one_answer(own_app)
    assert answer.status_code == 200


def test_client_errors_are_not_retried(own_app, own_stack_env, start_worker, upstream):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"status": 400, "message": "secret upstream detail"}]})
    _, answer = one_answer(own_app)
    assert answer.status_code == 502
    assert answer.get_json() == {"error": "The model service refused this request (HTTP 400)."}
    assert len(upstream_requests(upstream)) == 1


def test_bad_key_is_reported_to_the_research_team(own_app, own_stack_env, start_worker, upstream):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"status": 401}]})
    _, answer = one_answer(own_app)
    assert answer.status_code == 502
    assert "API key" in answer.get_json()["error"]
    assert "sk-test" not in answer.get_data(as_text=True)


def test_answer_stays_readable_for_result_ttl(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    job_id, answer = one_answer(own_app)
    assert answer.status_code == 200
    assert connection.ttl(outcome_key(job_id)) > 86400 - 60
    # RQ's own bookkeeping follows the stored answer by a moment.
    job = wait_for(lambda: _finished(connection, job_id))
    assert job.result_ttl == 86400
    assert connection.ttl(job.key) > 86400 - 60


def test_rerun_of_an_answered_job_keeps_the_first_answer(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    job_id, first = one_answer(own_app)
    queue = make_queue(connection)
    # As when a worker dies after answering but before RQ's bookkeeping.
    queue.enqueue_job(fetch_job(connection, job_id))
    wait_for(lambda: fetch_job(connection, job_id).get_status() == "finished" and not queue.count)
    again = own_app.test_client().post("/check_response", json={"jobId": job_id})
    assert again.get_json() == first.get_json()
    assert len(upstream_requests(upstream)) == 1


def _finished(connection, job_id):
    job = fetch_job(connection, job_id)
    return job if job.get_status() == "finished" else None
