"""Erasing a participant leaves nothing in MongoDB, Redis or an export, and says so once."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from redis import Redis

from studychat.factory import create_app
from studychat.study.sessions import token_key
from studychat.web.services import close_services
from tests.support.polling import poll_answer, wait_for
from tests.support.stack import fresh_example_study

pytestmark = pytest.mark.usefixtures("worker")

TOKEN = "admin-token-for-erasure-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def app(stack_env, tmp_path):
    made = create_app(stack_env | fresh_example_study(tmp_path) | {"ADMIN_TOKEN": TOKEN})
    yield made
    close_services(made)


@pytest.fixture()
def redis(stack_env):
    connection = Redis.from_url(stack_env["REDIS_URL"])
    yield connection
    connection.close()


def take_part(client, db, participant_id: str) -> tuple[str, list[str]]:
    """A session with two answered turns and a saved record, plus one legacy chat."""
    token = client.post("/sessions", json={"participantId": participant_id}).get_json()[
        "sessionToken"
    ]
    job_ids = []
    for text in (f"secret words of {participant_id}", "more words"):
        sent = client.post("/chat", json={"sessionToken": token, "message": {"content": text}})
        job_ids.append(sent.get_json()["jobId"])
        poll_answer(client, job_ids[-1])
    legacy = {"messages": [{"role": "user", "content": "legacy"}], "participantId": participant_id}
    job_ids.append(client.post("/chat", json=legacy).get_json()["jobId"])
    poll_answer(client, job_ids[-1])
    assert client.post("/save", json={"sessionToken": token, "tasks": {"q": 1}}).status_code == 201
    wait_for(lambda: db["chat_log"].count_documents({"participantId": participant_id}) == 3)
    return token, job_ids


def traces_in_redis(redis: Redis, participant_id: str, token: str, job_ids: list[str]) -> list:
    """Every Redis key or stream entry that names the participant, their session or jobs."""
    needles = [participant_id, token_key(token).removeprefix("session:"), *job_ids]
    found = []
    for key in redis.scan_iter(count=1000):
        name = key.decode(errors="replace")
        kind = redis.type(key).decode()
        text = name
        if kind == "hash":
            text += str(redis.hgetall(key))
        elif kind == "stream":
            text += str(redis.xrange(key))
        elif kind == "string":
            text += str(redis.get(key))
        elif kind == "list":
            text += str(redis.lrange(key, 0, -1))
        elif kind == "zset":
            text += str(redis.zrange(key, 0, -1))
        found += [(name, needle) for needle in needles if needle in text]
    return found


def test_deleting_a_participant_leaves_nothing_anywhere(app, db, redis, participant_id, tmp_path):
    client = app.test_client()
    other = "Q-" + uuid.uuid4().hex  # shares no prefix with participant_id
    token, job_ids = take_part(client, db, participant_id)
    take_part(client, db, other)
    assert traces_in_redis(redis, participant_id, token, job_ids)  # there is something to erase

    answer = client.delete(f"/admin/participants/{participant_id}", headers=BEARER)
    assert answer.status_code == 200
    removed = answer.get_json()["removed"]
    assert (removed["records"], removed["sessions"], removed["transcripts"]) == (1, 1, 3)
    assert removed["redis"] > 0

    for collection in ("data", "sessions"):
        assert db[collection].count_documents({"_id": participant_id}) == 0
    assert db["chat_log"].count_documents({"participantId": participant_id}) == 0
    assert db["chat_log"].count_documents({"_id": {"$in": job_ids}}) == 0
    assert traces_in_redis(redis, participant_id, token, job_ids) == []
    assert db["data"].count_documents({"_id": other}) == 1  # nobody else is touched

    runner = app.test_cli_runner()
    for collection in ("data", "chat_log", "sessions"):
        exported = runner.invoke(args=["export", collection]).output
        assert participant_id + '"' not in exported and other in exported

    audit = db["erasures"].find_one(
        {"participantSha256": hashlib.sha256(participant_id.encode()).hexdigest()}
    )
    assert audit["requestedBy"].startswith("admin:") and audit["removed"] == removed
    assert participant_id not in str(audit)

    again = client.delete(f"/admin/participants/{participant_id}", headers=BEARER)
    assert again.status_code == 200
    assert again.get_json()["removed"] == {
        "redis": 0,
        "records": 0,
        "sessions": 0,
        "transcripts": 0,
    }


def test_the_command_line_erases_too_and_deleting_needs_the_admin_token(app, db, participant_id):
    client = app.test_client()
    take_part(client, db, participant_id)
    assert client.delete(f"/admin/participants/{participant_id}").status_code == 401
    result = app.test_cli_runner().invoke(args=["participants", "delete", participant_id])
    assert result.exit_code == 0, result.output
    assert f"Erased {participant_id}: " in result.output and "1 records" in result.output
    assert db["data"].count_documents({"_id": participant_id}) == 0
    assert db["erasures"].count_documents({"requestedBy": {"$regex": "^cli:"}}) >= 1
