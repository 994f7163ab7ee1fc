"""The worker rides through Redis restarts, outages and data loss, as a real process.

Redis is stopped, killed and restarted for real under a running `python worker.py`;
the worker must stay alive, say the outage once when it starts and once when it ends,
and answer every chat that Redis still holds.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from redis import Redis

from devtools.servers import RedisServer, WorkerProcess
from studychat.chat.task_queue import make_queue
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.chat_helpers import start_chats
from tests.support.polling import wait_for
from tests.support.stack import process_env
from tests.support.upstream import calls_in_flight, control, upstream_requests

pytestmark = pytest.mark.timeout(240)

CHAT = {"messages": [{"role": "user", "content": "hello again"}]}
OUTAGE_STARTED = "Redis unavailable"
OUTAGE_ENDED = "Redis is back"


def poll_through_outage(client, job_id: str, timeout: float = 60.0):
    """Poll like a frontend that retries while the service says it is unavailable (503)."""

    def probe():
        answer = client.post("/check_response", json={"jobId": job_id})
        done = answer.status_code != 503 and answer.get_json() != {"processing": True}
        return answer if done else None

    return wait_for(probe, timeout=timeout, interval=0.2)


def said_outage(worker: WorkerProcess) -> bool:
    return OUTAGE_STARTED in worker.log_text()


def said_recovery(worker: WorkerProcess) -> bool:
    return OUTAGE_ENDED in worker.log_text()


def assert_outage_said_once(worker: WorkerProcess) -> None:
    wait_for(lambda: said_recovery(worker), timeout=30)
    log = worker.log_text()
    assert (log.count(OUTAGE_STARTED), log.count(OUTAGE_ENDED)) == (1, 1), log[-3000:]
    assert "Traceback" not in log


def answered_within(client, job_ids: list[str], seconds: float) -> list[int]:
    """Status codes of every job's answer, all polled against one common deadline."""
    deadline = time.monotonic() + seconds
    return [
        poll_through_outage(client, job_id, max(deadline - time.monotonic(), 0.1)).status_code
        for job_id in job_ids
    ]


def test_restart_with_persistence_answers_every_chat(
    own_app, own_redis, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 2.0})
    worker = start_worker(own_stack_env | {"WORKER_CONCURRENCY": "10"})
    client = own_app.test_client()
    job_ids = start_chats(client, 30)
    # Ten model calls in flight, twenty chats waiting in the queue.
    wait_for(lambda: calls_in_flight(upstream, connection) == 10)
    own_redis.stop()  # SIGTERM: a clean shutdown that writes the append-only file
    wait_for(lambda: said_outage(worker), timeout=30)
    own_redis.start()
    assert answered_within(client, job_ids, 60) == [200] * 30
    assert worker.running
    assert_outage_said_once(worker)
    # Every chat was answered once: ten calls before the restart, twenty after, no rerun.
    assert len(upstream_requests(upstream)) == 30


def test_redis_down_for_thirty_seconds_while_a_study_runs(
    own_app, own_redis, own_stack_env, start_worker, upstream, connection, participant_id
):
    control(upstream, {"latency": 1.0})
    worker = start_worker(own_stack_env)
    client = own_app.test_client()
    before = start_chats(client, 5)
    wait_for(lambda: calls_in_flight(upstream, connection) == 5)
    own_redis.stop()
    down_until = time.monotonic() + 30
    # Participants keep coming during the outage: chats are refused with a 503 they can
    # retry, participation checks and saves still work.
    while time.monotonic() < down_until:
        assert client.post("/chat", json=CHAT).status_code == 503
        checked = client.post("/check_participation", json={"id": participant_id})
        assert checked.status_code == 204
        time.sleep(1)
    assert worker.running
    own_redis.start()
    after = start_chats(client, 5)
    assert answered_within(client, before + after, 60) == [200] * 10
    assert_outage_said_once(worker)


def test_redis_restarted_empty_loses_jobs_but_not_the_worker(
    stack_env, tmp_path: Path, start_worker, upstream
):
    with RedisServer(directory=tmp_path / "redis") as redis_server:  # no persistence
        env = stack_env | {
            "REDIS_URL": redis_server.url,
            "DATABASE_NAME": "study_" + uuid.uuid4().hex[:12],
            "WORKER_HEARTBEAT_S": "1",
            "WORKER_CONCURRENCY": "1",
        }
        app = create_app(env)
        try:
            client = app.test_client()
            control(upstream, {"latency": 3.0})
            worker = start_worker(env)
            job_ids = start_chats(client, 4)
            connection = Redis.from_url(redis_server.url)
            wait_for(lambda: calls_in_flight(upstream, connection) == 1)
            connection.close()
            redis_server.kill()  # SIGKILL: nothing of its data survives
            wait_for(lambda: said_outage(worker), timeout=30)
            redis_server.start()
            wait_for(lambda: "registering it and its jobs again" in worker.log_text())
            codes = answered_within(client, job_ids, 60)
            # The job in flight is registered again and answered; the three that only sat
            # in the lost queue are unknown now, never "processing" forever.
            assert codes == [200, 404, 404, 404]
            control(upstream, {"latency": 0.05})
            new = start_chats(client, 3)
            assert answered_within(client, new, 30) == [200] * 3
            assert worker.running
            assert_outage_said_once(worker)
            # It registered again, so RQ's tools and /readyz see it.
            assert client.get("/readyz").status_code == 200
        finally:
            close_services(app)


def test_outage_while_the_worker_is_idle(own_app, own_redis, own_stack_env, start_worker, upstream):
    worker = start_worker(own_stack_env)
    own_redis.stop()
    wait_for(lambda: said_outage(worker), timeout=30)
    own_redis.start()
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    assert answered_within(client, job_ids, 30) == [200] * 3
    assert worker.running
    assert_outage_said_once(worker)


def test_worker_started_while_redis_is_down_waits_for_it(
    own_app, own_redis, own_stack_env, tmp_path: Path, upstream
):
    own_redis.stop()
    worker = WorkerProcess(
        process_env(own_stack_env), directory=tmp_path / "w", ready_check=said_outage
    )
    with worker:
        own_redis.start()
        client = own_app.test_client()
        job_ids = wait_for(lambda: _chats_accepted(client), timeout=30)
        assert answered_within(client, job_ids, 30) == [200] * 2
        assert_outage_said_once(worker)


def _chats_accepted(client) -> list[str] | None:
    answers = [client.post("/chat", json=CHAT) for _ in range(2)]
    if any(answer.status_code != 202 for answer in answers):
        return None
    return [answer.get_json()["jobId"] for answer in answers]


def test_outage_during_warm_shutdown_loses_nothing(
    own_app, own_redis, own_stack_env, start_worker, upstream, connection
):
    control(upstream, {"latency": 3.0})
    worker = start_worker(own_stack_env | {"WORKER_SHUTDOWN_GRACE_S": "20"})
    client = own_app.test_client()
    job_ids = start_chats(client, 5)
    wait_for(lambda: calls_in_flight(upstream, connection) == 5)
    own_redis.stop()
    # SIGTERM during the outage: the jobs in flight finish, their answers wait for Redis.
    worker.signal_stop()
    own_redis.start()
    assert worker.wait_exit(timeout=30) == 0
    assert answered_within(client, job_ids, 30) == [200] * 5
    assert make_queue(connection).started_job_registry.count == 0
    assert "Traceback" not in worker.log_text()


def test_outage_past_the_shutdown_grace_hands_jobs_to_recovery(
    own_app, own_redis, own_stack_env, start_worker, upstream, connection
):
    # Longer than the grace, shorter than recovery takes (3 missed beats): the first
    # worker's calls have ended before the next worker runs the jobs again.
    control(upstream, {"faults": [{"delay": 4}] * 3})
    worker = start_worker(own_stack_env | {"WORKER_SHUTDOWN_GRACE_S": "1"})
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    wait_for(lambda: calls_in_flight(upstream, connection) == 3)
    own_redis.stop()
    worker.signal_stop()
    # Redis stays down past the grace period: the worker leaves without a crash...
    assert worker.wait_exit(timeout=30) == 0
    assert "Traceback" not in worker.log_text()
    own_redis.start()
    # ...and the next worker's recovery runs the jobs it could not hand back.
    start_worker(own_stack_env)
    assert answered_within(client, job_ids, 60) == [200] * 3
