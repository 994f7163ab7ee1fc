"""Redis and MongoDB stopped and restarted for real: fast 503s, then recovery, nothing lost."""

from __future__ import annotations

import time
import uuid

import pytest
from pymongo import MongoClient

from devtools.servers import MongoServer
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import calls_in_flight, control

pytestmark = pytest.mark.timeout(180)

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def record(participant_id: str) -> dict:
    return {"participantId": participant_id, "messages": [], "tasks": {}, "condition": "A"}


def test_redis_down_answers_503_fast_and_recovers(
    own_app, own_redis, own_stack_env, start_worker, upstream, participant_id
):
    start_worker(own_stack_env)
    client = own_app.test_client()
    own_redis.stop()
    chat, seconds = timed(lambda: client.post("/chat", json=CHAT))
    assert chat.status_code == 503
    assert seconds < 5
    assert client.post("/check_response", json={"jobId": str(uuid.uuid4())}).status_code == 503
    # Routes that need only MongoDB keep working.
    assert client.post("/save", json=record(participant_id)).status_code == 201
    own_redis.start()
    job_id = wait_for(lambda: client.post("/chat", json=CHAT).get_json().get("jobId"))
    assert poll_answer(client, job_id, timeout=60).status_code == 200


def test_queued_chats_survive_a_redis_restart(
    own_app, own_redis, own_stack_env, start_worker, upstream
):
    client = own_app.test_client()
    job_ids = start_chats(client, 5)
    own_redis.restart()
    start_worker(own_stack_env)
    answers = [poll_answer(client, job_id, timeout=60) for job_id in job_ids]
    assert [answer.status_code for answer in answers] == [200] * 5


def test_chats_in_flight_during_a_redis_outage_are_answered(
    own_app, own_redis, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"delay": 10}] * 3})
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    wait_for(lambda: calls_in_flight(upstream, connection) == 3)
    own_redis.stop()
    own_redis.start()
    answers = [poll_through_outage(client, job_id) for job_id in job_ids]
    assert [answer.status_code for answer in answers] == [200] * 3


def poll_through_outage(client, job_id: str):
    """Poll like a frontend that retries while the service says it is unavailable (503)."""

    def probe():
        answer = client.post("/check_response", json={"jobId": job_id})
        done = answer.status_code != 503 and answer.get_json() != {"processing": True}
        return answer if done else None

    return wait_for(probe, timeout=90)


def test_mongodb_down_answers_503_fast_and_recovers(stack_env, tmp_path, participant_id):
    with MongoServer(directory=tmp_path, storage_path=tmp_path / "data") as mongo:
        app = create_app({**stack_env, "DATABASE_URL": mongo.url})
        client = app.test_client()
        try:
            mongo.stop()
            saved, seconds = timed(lambda: client.post("/save", json=record(participant_id)))
            assert (saved.status_code, seconds < 5) == (503, True)
            checked = client.post("/check_participation", json={"id": participant_id})
            assert checked.status_code == 503
            # Chat needs only Redis and keeps working.
            assert client.post("/chat", json=CHAT).status_code == 202
            mongo.start()
            saved = wait_for(lambda: _saved(client, participant_id), timeout=60)
            assert saved == 201
            documents = MongoClient(mongo.url)[stack_env["DATABASE_NAME"]]["data"]
            assert documents.count_documents({"_id": participant_id}) == 1
        finally:
            close_services(app)


def _saved(client, participant_id: str) -> int | None:
    code = client.post("/save", json=record(participant_id)).status_code
    return code if code != 503 else None
