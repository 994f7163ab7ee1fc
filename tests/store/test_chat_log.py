"""Every chat job leaves a transcript in MongoDB's chat_log, even across a MongoDB outage."""

from __future__ import annotations

import json
import uuid

import pytest
from pymongo import MongoClient, UpdateOne
from redis import Redis

from devtools.servers import MongoServer
from studychat.chat.provenance import utc_iso
from studychat.store import chat_log
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def chat_log_collection(own_stack_env):
    mongo = MongoClient(own_stack_env["DATABASE_URL"], tz_aware=True)
    yield mongo[own_stack_env["DATABASE_NAME"]]["chat_log"]
    mongo.close()


def test_finished_chat_is_logged_with_its_answer(
    own_app, own_stack_env, start_worker, upstream, chat_log_collection
):
    start_worker(own_stack_env)
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1, participant_id="P-log")
    response = poll_answer(client, job_id).get_json()["response"]
    entry = wait_for(lambda: chat_log_collection.find_one({"_id": job_id}))
    assert entry["participantId"] == "P-log"
    assert entry["messages"] == [{"role": "user", "content": "turn 0"}]
    assert entry["response"] == response
    assert entry["status"] == "finished"
    assert entry["model"] == "gpt-4o-mini"
    assert entry["usage"] == response["usage"]
    assert entry["attempts"] == 1
    assert entry["queuedAt"] <= entry["startedAt"] <= entry["endedAt"]


def test_failed_chat_is_logged_with_the_reason(
    own_app, own_stack_env, start_worker, upstream, chat_log_collection
):
    start_worker(own_stack_env)
    control(upstream, {"faults": [{"status": 503}] * 3})
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    error = poll_answer(client, job_id, timeout=30).get_json()["error"]
    entry = wait_for(lambda: chat_log_collection.find_one({"_id": job_id}))
    assert entry["status"] == "failed"
    assert entry["error"] == error
    assert entry["attempts"] == 3
    assert entry["response"] is None


def test_log_waits_out_a_mongodb_outage(own_app, own_stack_env, start_worker, upstream, tmp_path):
    with MongoServer(directory=tmp_path, storage_path=tmp_path / "mongo") as mongo:
        start_worker(own_stack_env | {"DATABASE_URL": mongo.url})
        mongo.stop()
        client = own_app.test_client()
        job_ids = start_chats(client, 3)
        # Answers do not wait for MongoDB.
        assert [poll_answer(client, j).status_code for j in job_ids] == [200] * 3
        mongo.start()
        collection = MongoClient(mongo.url)[own_stack_env["DATABASE_NAME"]]["chat_log"]
        wait_for(lambda: collection.count_documents({}) == 3, timeout=60)
        assert {doc["_id"] for doc in collection.find()} == set(job_ids)


@pytest.fixture()
def shipper_parts(own_stack_env):
    connection = Redis.from_url(own_stack_env["REDIS_URL"])
    mongo = MongoClient(own_stack_env["DATABASE_URL"], tz_aware=True)
    yield connection, mongo[own_stack_env["DATABASE_NAME"]]
    connection.close()
    mongo.close()


def queue_entries(connection: Redis, count: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    with connection.pipeline() as pipeline:
        for job_id in ids:
            entry = {"_id": job_id, "status": "finished", "endedAt": utc_iso()}
            chat_log.add_entry(pipeline, entry)
        pipeline.execute()
    return ids


def test_shipping_twice_never_duplicates(shipper_parts):
    connection, db = shipper_parts
    (job_id,) = queue_entries(connection, 1)
    connection.xadd(chat_log.STREAM, {"doc": json.dumps({"_id": job_id, "status": "finished"})})
    # No answer waits for a delivery note here (see the tests of held answers below).
    shipper = chat_log.ChatLogShipper(connection, db, consumer="a", hold_s=0)
    shipper._ensure_group()
    while shipper.ship_once():
        pass
    assert db["chat_log"].count_documents({"_id": job_id}) == 1
    assert connection.xlen(chat_log.STREAM) == 0


def test_entries_of_a_dead_shipper_are_taken_over(shipper_parts):
    connection, db = shipper_parts
    ids = queue_entries(connection, 5)
    dead = chat_log.ChatLogShipper(connection, db, consumer="dead")
    dead._ensure_group()
    dead._read(">")  # claimed, never written: its process died here
    heir = chat_log.ChatLogShipper(connection, db, consumer="heir", claim_idle_ms=0, hold_s=0)
    assert heir.ship_once() == 5
    assert {doc["_id"] for doc in db["chat_log"].find()} == set(ids)


def test_dates_become_datetimes():
    document = chat_log.to_document(
        json.dumps({"_id": "j", "queuedAt": "2026-01-02T03:04:05+00:00"})
    )
    assert document["queuedAt"].year == 2026
    assert document["queuedAt"].utcoffset().total_seconds() == 0


def test_an_answer_and_its_delivery_note_in_one_batch_are_one_complete_entry(shipper_parts):
    connection, db = shipper_parts
    (job_id,) = queue_entries(connection, 1)
    delivered_at = utc_iso()
    with connection.pipeline() as pipeline:
        chat_log.add_entry(pipeline, chat_log.delivery_entry(job_id, delivered_at))
        pipeline.execute()
    shipper = chat_log.ChatLogShipper(connection, db, consumer="a")
    shipper._ensure_group()
    assert shipper.ship_once() == 2
    entry = db["chat_log"].find_one({"_id": job_id})
    assert entry["status"] == "finished"
    assert (
        entry["deliveredAt"]
        == chat_log.to_document(json.dumps({"_id": job_id, "deliveredAt": delivered_at}))[
            "deliveredAt"
        ]
    )
    assert "patch" not in entry


def test_a_second_of_answers_and_their_delivery_notes_ship_as_complete_entries(shipper_parts):
    # 500 answers a second and, a moment later each, their delivery notes.
    connection, db = shipper_parts
    job_ids = queue_entries(connection, 500)
    with connection.pipeline() as pipeline:
        for job_id in job_ids:
            chat_log.add_entry(pipeline, chat_log.delivery_entry(job_id, utc_iso()))
        pipeline.execute()
    shipper = chat_log.ChatLogShipper(connection, db, consumer="a")
    shipper._ensure_group()
    # One read and one write: every job's entry whole, none first without its note.
    assert shipper.ship_once() == 1000
    written = db["chat_log"].find({}, {"status": 1, "deliveredAt": 1})
    assert sorted((doc["_id"], "deliveredAt" in doc) for doc in written) == sorted(
        (job_id, True) for job_id in job_ids
    )


@pytest.mark.unit
def test_later_fields_of_a_job_win_in_a_merged_write():
    writes = chat_log.upserts_of(
        [
            {"_id": "a", "status": "failed", "attempts": 1},
            {"_id": "b", "status": "finished"},
            {"_id": "a", "status": "finished", "attempts": 2},
            {"_id": "a", "deliveredAt": "t", "patch": True},
        ]
    )
    assert writes == [
        UpdateOne(
            {"_id": "a"},
            {"$set": {"status": "finished", "attempts": 2, "deliveredAt": "t"}},
            upsert=True,
        ),
        UpdateOne({"_id": "b"}, {"$set": {"status": "finished"}}, upsert=True),
    ]


def deliver(connection: Redis, job_id: str) -> str:
    """The note the web adds when the participant's client gets the answer."""
    delivered_at = utc_iso()
    with connection.pipeline() as pipeline:
        chat_log.add_entry(pipeline, chat_log.delivery_entry(job_id, delivered_at))
        pipeline.execute()
    return delivered_at


def test_an_answer_waits_for_its_delivery_note_and_ships_with_it(shipper_parts):
    connection, db = shipper_parts
    (job_id,) = queue_entries(connection, 1)
    shipper = chat_log.ChatLogShipper(connection, db, consumer="a")
    shipper._ensure_group()
    assert shipper.ship_once() == 0  # read, and held back in Redis
    assert db["chat_log"].count_documents({"_id": job_id}) == 0
    assert connection.xlen(chat_log.STREAM) == 1

    deliver(connection, job_id)

    assert shipper.ship_once() == 2
    entry = db["chat_log"].find_one({"_id": job_id})
    assert entry["status"] == "finished" and entry["deliveredAt"] is not None
    assert connection.xlen(chat_log.STREAM) == 0


def test_an_answer_never_fetched_ships_alone_once_its_wait_is_over(shipper_parts):
    connection, db = shipper_parts
    (job_id,) = queue_entries(connection, 1)
    shipper = chat_log.ChatLogShipper(connection, db, consumer="a", hold_s=0.5)
    shipper._ensure_group()
    assert shipper.ship_once() == 0

    wait_for(lambda: shipper.ship_once(block_ms=100) == 1, timeout=10)

    assert db["chat_log"].find_one({"_id": job_id})["status"] == "finished"
    assert connection.xlen(chat_log.STREAM) == 0


def test_a_held_answer_of_a_dead_shipper_is_taken_over(shipper_parts):
    connection, db = shipper_parts
    (job_id,) = queue_entries(connection, 1)
    dead = chat_log.ChatLogShipper(connection, db, consumer="dead")
    dead._ensure_group()
    assert dead.ship_once() == 0  # held back when its process died
    heir = chat_log.ChatLogShipper(connection, db, consumer="heir", claim_idle_ms=0, hold_s=0)

    assert heir.ship_once() == 1

    assert db["chat_log"].count_documents({"_id": job_id}) == 1
