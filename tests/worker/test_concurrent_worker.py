"""The concurrent worker, run as a real process: concurrency, RQ bookkeeping, shutdown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rq import Worker
from rq.job import JobStatus
from rq.registry import clean_registries

from studychat.chat.outcomes import store_outcome, success_body
from studychat.chat.task_queue import make_queue
from tests.support.chat_helpers import fetch_job, start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.redis_monitor import commands_on
from tests.support.upstream import calls_in_flight, control, upstream_requests, upstream_stats

pytestmark = pytest.mark.timeout(120)


def answer_all(client, job_ids, timeout=60.0) -> list[int]:
    return [poll_answer(client, job_id, timeout=timeout).status_code for job_id in job_ids]


def test_many_model_calls_in_flight_at_once(own_app, own_stack_env, start_worker, upstream):
    control(upstream, {"latency": 1.0})
    start_worker(own_stack_env | {"WORKER_CONCURRENCY": "50"})
    client = own_app.test_client()
    job_ids = start_chats(client, 40)
    assert answer_all(client, job_ids) == [200] * 40
    assert upstream_stats(upstream)["max_in_flight"] >= 30


def test_jobs_are_taken_only_when_a_slot_is_free(
    own_app, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 2.0})
    start_worker(own_stack_env | {"WORKER_CONCURRENCY": "5"})
    client = own_app.test_client()
    job_ids = start_chats(client, 12)
    wait_for(lambda: upstream_stats(upstream)["in_flight"] >= 5)
    # The other seven wait in the queue, free for any other worker to take.
    assert make_queue(connection).count == 7
    assert upstream_stats(upstream)["max_in_flight"] == 5
    assert answer_all(client, job_ids) == [200] * 12


def test_jobs_waiting_together_are_taken_in_one_round_trip(
    own_app, own_stack_env, start_worker, upstream, connection
):
    client = own_app.test_client()
    job_ids = start_chats(client, 20)  # a burst waits before the worker is up
    with commands_on(connection, "rq:queue:chat") as seen:
        start_worker(own_stack_env | {"WORKER_CONCURRENCY": "50"})
        assert answer_all(client, job_ids) == [200] * 20
    takes = [command.split()[0] for command in seen]
    takes = [name for name in takes if name in ("EVALSHA", "BLMOVE", "LMOVE")]
    # One script moved all 20 (its LMOVEs show inside it); RQ's dequeue takes one a trip.
    assert takes[:21] == ["EVALSHA"] + ["LMOVE"] * 20


def chats_at_a_steady_pace(client, count: int, interval_s: float) -> list[str]:
    """POST /chat `count` times, one every `interval_s`, as participants spread over time do."""
    job_ids = []
    for _ in range(count):
        job_ids += start_chats(client, 1)
        time.sleep(interval_s)  # the load's pace, not a wait on the worker
    return job_ids


@pytest.mark.parametrize(("window_ms", "at_least", "at_most"), [(0, 25, 30), (200, 1, 20)])
def test_jobs_coming_steadily_share_takes_within_the_window(
    own_app, own_stack_env, start_worker, upstream, connection, window_ms, at_least, at_most
):
    start_worker(own_stack_env | {"WORKER_TAKE_WINDOW_MS": str(window_ms)})
    client = own_app.test_client()
    with commands_on(connection, "rq:queue:chat") as seen:
        # 20 a second: without a window each comes to an empty queue and is taken alone;
        # with 200 ms, once the rate is known the worker waits 100 ms, for two more.
        job_ids = chats_at_a_steady_pace(client, 30, 0.05)
        assert answer_all(client, job_ids) == [200] * 30
    takes = [command.split()[0] for command in seen].count("EVALSHA")
    assert at_least <= takes <= at_most


def test_a_lone_job_is_taken_at_once_whatever_the_window(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env | {"WORKER_TAKE_WINDOW_MS": "1000"})
    client = own_app.test_client()
    [job_id] = start_chats(client, 1)
    assert answer_all(client, [job_id]) == [200]
    job = fetch_job(connection, job_id)
    # No job came before it, so none is expected within the window: it is not waited on.
    assert (job.started_at - job.enqueued_at).total_seconds() < 0.9


def test_a_job_run_again_after_storing_its_answer_keeps_it_and_calls_no_model(
    own_app, own_stack_env, start_worker, upstream, connection
):
    client = own_app.test_client()
    first_job, second_job = start_chats(client, 2)
    # As a worker leaves it that died after storing the answer, before RQ's bookkeeping:
    # recovery puts the job back on the queue and it runs again.
    earlier = '{"id": "chatcmpl-earlier", "choices": []}'
    with connection.pipeline() as pipeline:
        store_outcome(pipeline, first_job, 200, success_body(earlier), ttl=60)
        pipeline.execute()
    start_worker(own_stack_env)
    assert answer_all(client, [first_job, second_job]) == [200, 200]
    assert poll_answer(client, first_job).get_json() == {"response": json.loads(earlier)}
    wait_for(lambda: fetch_job(connection, first_job).get_status() == JobStatus.FINISHED)
    assert fetch_job(connection, first_job).return_value() == {"recovered": True}
    # Only the job without an answer went to the model: nobody pays twice for one turn.
    assert len(upstream_requests(upstream)) == 1


def test_rq_info_reads_the_queue_and_the_jobs_in_flight(
    own_app, own_stack_env, start_worker, upstream, connection, own_redis
):
    control(upstream, {"latency": 3.0})
    start_worker(own_stack_env | {"WORKER_CONCURRENCY": "2"})
    client = own_app.test_client()
    job_ids = start_chats(client, 5)
    wait_for(lambda: calls_in_flight(upstream, connection) == 2)
    info = subprocess.run(
        [str(Path(sys.executable).parent / "rq"), "info", "--url", own_redis.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert info.returncode == 0, info.stderr
    # RQ's own tool sees what the service did: 3 waiting, 2 running, 1 worker.
    assert re.search(r"^chat\s+\|\S* 3, 2 executing, 0 finished, 0 failed$", info.stdout, re.M)
    assert "1 workers, 1 queues" in info.stdout
    assert answer_all(client, job_ids) == [200] * 5


def test_status_and_registries_right_for_every_job(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    client = own_app.test_client()
    finished = start_chats(client, 10)
    assert answer_all(client, finished) == [200] * 10
    control(upstream, {"faults": [{"status": 500}] * 3})
    failed = start_chats(client, 1)
    assert answer_all(client, failed) == [502]
    queue = make_queue(connection)
    # RQ's record of a success follows the stored answer by a moment (success_batches).
    wait_for(lambda: queue.finished_job_registry.count == len(finished))
    # RQ's maintenance, even long after, must not turn finished jobs into failed ones.
    queue.started_job_registry.cleanup(timestamp=time.time() + 3600)
    clean_registries(queue)
    for job_id in finished:
        assert fetch_job(connection, job_id).get_status() == JobStatus.FINISHED
    assert set(queue.finished_job_registry.get_job_ids()) == set(finished)
    assert queue.failed_job_registry.get_job_ids() == failed
    assert queue.started_job_registry.count == 0
    assert not connection.keys("rq:execution:*")


def test_jobs_ending_together_record_their_successes_together(
    own_app, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 1.0})
    client = own_app.test_client()
    job_ids = start_chats(client, 20)  # all waiting, so taken together and ending together
    before = transactions_run(connection)
    start_worker(own_stack_env | {"WORKER_CONCURRENCY": "50"})
    assert answer_all(client, job_ids) == [200] * 20
    queue = make_queue(connection)
    wait_for(lambda: queue.finished_job_registry.count == 20)
    # Each job stores its answer in a transaction of its own (20); the worker's start, the
    # jobs' start and their successes take a few more (25 in all here), where a
    # transaction per success takes 20 more (44).
    assert 20 < transactions_run(connection) - before <= 32
    # RQ's counters of the worker, as `rq info` and rq-dashboard read them, count every
    # job and all its time, though added once per batch.
    (worker,) = Worker.all(connection=connection)
    assert worker.successful_job_count == 20
    ran = [fetch_job(connection, job_id) for job_id in job_ids]
    seconds = sum((job.ended_at - job.started_at).total_seconds() for job in ran)
    assert seconds >= 20 * 1.0  # each waited its second for the model
    assert worker.total_working_time == pytest.approx(seconds, abs=0.001)


def transactions_run(connection) -> int:
    """How many MULTI/EXEC transactions Redis has run since it started."""
    return int(connection.info("commandstats").get("cmdstat_exec", {}).get("calls", 0))


def test_each_answered_job_logs_one_line(own_app, own_stack_env, start_worker, upstream):
    worker = start_worker(own_stack_env)
    client = own_app.test_client()
    job_ids = start_chats(client, 5)
    assert answer_all(client, job_ids) == [200] * 5
    wait_for(lambda: all(job_id in worker.log_text() for job_id in job_ids))
    lines = worker.log_text().splitlines()
    for job_id in job_ids:
        about_it = [json.loads(line) for line in lines if job_id in line]
        # The job's own line, with its id as a field; not RQ's two saying the same again.
        assert [line["message"][:11] for line in about_it] == ["answered in"]
        assert about_it[0]["job_id"] == job_id


def test_heartbeats_keep_long_jobs_alive(
    own_app, own_stack_env, start_worker, upstream, connection
):
    # Heartbeat every 1 s: a job silent for 8 s would be rerun.
    start_worker(own_stack_env | {"LLM_TIMEOUT_S": "30"})
    control(upstream, {"faults": [{"delay": 12}] * 3})
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    registry = make_queue(connection).started_job_registry
    wait_for(lambda: registry.count == 3)
    first = dict(connection.zrange(registry.key, 0, -1, withscores=True))
    wait_for(lambda: all(connection.zscore(registry.key, k) > s for k, s in first.items()))
    assert answer_all(client, job_ids) == [200] * 3
    # Outliving the heartbeat's lifetime did not make anyone run them twice.
    assert len(upstream_requests(upstream)) == 3


def keep_short_chats_flowing(client, until: threading.Event) -> list[str]:
    """Start chats one after another, each once the last is answered, until told to stop."""
    job_ids: list[str] = []
    while not until.is_set():
        job_ids += start_chats(client, 1, participant_id="P-short")
        assert poll_answer(client, job_ids[-1]).status_code == 200
    return job_ids


def test_only_jobs_running_for_a_while_get_a_heartbeat(
    own_app, own_stack_env, start_worker, upstream, connection
):
    # Heartbeat every 1 s. The first call takes 3.5 s, every other 0.3 s: younger than
    # half an interval at any beat, their records are as fresh as a beat would make them.
    control(upstream, {"latency": 0.3, "faults": [{"delay": 3.5}]})
    start_worker(own_stack_env)
    registry_key = make_queue(connection).started_job_registry.key
    done = threading.Event()
    with commands_on(connection, registry_key) as seen, ThreadPoolExecutor(3) as feeders:
        (long_job,) = start_chats(own_app.test_client(), 1)
        # Its call takes the slow answer before any short chat is queued: jobs the worker
        # takes together reach the model in no set order.
        wait_for(lambda: len(upstream_requests(upstream)) == 1)
        flows = [
            feeders.submit(keep_short_chats_flowing, own_app.test_client(), done) for _ in range(3)
        ]
        assert poll_answer(own_app.test_client(), long_job).status_code == 200
        done.set()
        short_jobs = [job_id for flow in flows for job_id in flow.result()]
    beats = [command for command in seen if command.startswith(f"ZADD {registry_key} XX ")]
    assert len([beat for beat in beats if long_job in beat]) >= 2
    assert len(short_jobs) >= 9
    assert [beat for beat in beats if any(job_id in beat for job_id in short_jobs)] == []


def test_a_job_outlives_the_ttl_it_was_queued_with_once_started(
    own_app, own_stack_env, start_worker, connection
):
    start_worker(own_stack_env)
    # A queued job that may expire after 2 s; once started it must not, however long it runs.
    job = make_queue(connection).enqueue("tests.support.slow_jobs.keep_busy", 4, ttl=2)
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, timeout=15)
    assert connection.ttl(job.key) == -1
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=15)
    assert job.return_value() == "done"


def test_job_timeout_works_on_worker_threads(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    slow = make_queue(connection).enqueue("tests.support.slow_jobs.keep_busy", 60, job_timeout=1)
    wait_for(lambda: slow.get_status(refresh=True) == JobStatus.FAILED, timeout=15)
    assert "JobTimeoutException" in slow.latest_result().exc_string
    client = own_app.test_client()
    assert answer_all(client, start_chats(client, 1)) == [200]


def test_two_workers_share_the_queue_without_running_a_job_twice(
    own_app, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 0.3})
    for _ in range(2):
        start_worker(own_stack_env | {"WORKER_CONCURRENCY": "10"})
    client = own_app.test_client()
    job_ids = start_chats(client, 60)
    assert answer_all(client, job_ids) == [200] * 60
    assert len(upstream_requests(upstream)) == 60
    workers = {fetch_job(connection, job_id).worker_name for job_id in job_ids}
    assert len(workers) == 2


def test_sigterm_lets_jobs_in_flight_finish(
    own_app, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 2.0})
    worker = start_worker(own_stack_env | {"WORKER_SHUTDOWN_GRACE_S": "20"})
    client = own_app.test_client()
    job_ids = start_chats(client, 5)
    wait_for(lambda: calls_in_flight(upstream, connection) == 5)
    assert worker.stop(timeout=30) == 0
    assert answer_all(client, job_ids, timeout=5) == [200] * 5
    assert make_queue(connection).started_job_registry.count == 0


def test_sigterm_hands_back_jobs_that_cannot_finish_in_time(
    own_app, own_stack_env, start_worker, upstream, connection
):
    worker = start_worker(own_stack_env | {"WORKER_SHUTDOWN_GRACE_S": "1"})
    control(upstream, {"faults": [{"delay": 60}] * 3})
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    wait_for(lambda: calls_in_flight(upstream, connection) == 3)
    assert worker.stop(timeout=30) == 0
    queue = make_queue(connection)
    assert sorted(queue.job_ids) == sorted(job_ids)
    assert {fetch_job(connection, j).get_status() for j in job_ids} == {JobStatus.QUEUED}
    assert queue.started_job_registry.count == 0
    start_worker(own_stack_env)
    assert answer_all(client, job_ids) == [200] * 3


def test_calls_in_flight_reuse_their_connections(own_app, own_stack_env, start_worker, upstream):
    # More calls at once than the SDK's default pool keeps alive (100): none is reopened.
    control(upstream, {"latency": 1.0})
    start_worker(own_stack_env | {"WORKER_CONCURRENCY": "150"})
    client = own_app.test_client()
    assert answer_all(client, start_chats(client, 150)) == [200] * 150
    first = upstream_stats(upstream)
    assert first["max_in_flight"] >= 120
    assert answer_all(client, start_chats(client, 150)) == [200] * 150
    second = upstream_stats(upstream)
    # One new connection is this test's own request for the figures.
    assert second["connections"] - first["connections"] <= 3
