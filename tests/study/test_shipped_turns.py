"""A shipped batch's answers and delivery times reach the sessions, with no write wasted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.database import Database

from devtools.servers import MongoServer
from studychat.chat.provenance import utc_iso
from studychat.store.database import make_mongo_client
from studychat.study import sessions
from studychat.study.definition import load_study
from studychat.study.shipped_turns import READ_AT_ONCE, Delivery, ShippedAnswer, record_batch
from tests.study.test_definition import EXAMPLE, SETTINGS

pytestmark = pytest.mark.integration

STUDY = load_study(EXAMPLE, SETTINGS)


@pytest.fixture(scope="module")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A MongoDB server of this module's own: its operation counts are this module's."""
    server = MongoServer(directory=tmp_path_factory.mktemp("mongo")).start()
    yield server
    server.stop()


@pytest.fixture()
def db(mongo: MongoServer) -> Iterator[Database]:
    client = make_mongo_client(mongo.url)
    yield client["shipped_" + uuid.uuid4().hex[:8]]
    client.close()


def writes(db: Database) -> int:
    """Updates the server has run so far."""
    return int(db.client.admin.command("serverStatus")["opcounters"]["update"])


def pending_turn(db: Database) -> tuple[str, str]:
    """A new session whose participant has sent a message: (participant id, job id)."""
    participant = "P-" + uuid.uuid4().hex
    sessions.open_session(db, STUDY, participant, {}, 3600)
    job_id = str(uuid.uuid4())
    sent = sessions.start_turn(db, participant, job_id, {"content": "hi"}, datetime.now(UTC))
    assert sent
    return participant, job_id


def answer_of(job_id: str) -> dict[str, Any]:
    return {"role": "assistant", "content": "hello", "jobId": job_id, "answeredAt": utc_iso()}


def conversation(db: Database, participant: str) -> dict[str, Any]:
    found = sessions.sessions(db).find_one({"_id": participant})
    assert found is not None
    return found


def ship_with_delivery(db: Database, participant: str, job_id: str, delivered: datetime) -> int:
    """Ship a batch of the job's answer and its delivery note; the writes it took."""
    before = writes(db)
    record_batch(
        db,
        [ShippedAnswer(participant, job_id, answer_of(job_id))],
        {job_id: Delivery(participant, delivered)},
    )
    return writes(db) - before


def test_an_answer_and_its_delivery_in_one_batch_are_one_write(db):
    participant, job_id = pending_turn(db)
    delivered = datetime.now(UTC).replace(microsecond=0)
    assert ship_with_delivery(db, participant, job_id, delivered) == 1
    session = conversation(db, participant)
    assert "pending" not in session
    answer = session["messages"][-1]
    assert (answer["jobId"], answer["content"], answer["deliveredAt"]) == (
        job_id,
        "hello",
        delivered,
    )


def test_a_batch_of_more_sessions_than_one_read_takes_settles_them_all(db):
    turns = [pending_turn(db) for _ in range(READ_AT_ONCE + 10)]
    delivered = datetime.now(UTC).replace(microsecond=0)
    before = writes(db)

    record_batch(
        db,
        [ShippedAnswer(participant, job_id, answer_of(job_id)) for participant, job_id in turns],
        {job_id: Delivery(participant, delivered) for participant, job_id in turns},
    )

    assert writes(db) - before == len(turns)
    for participant, job_id in turns:
        answer = conversation(db, participant)["messages"][-1]
        assert (answer["jobId"], answer["deliveredAt"]) == (job_id, delivered)


def test_a_turn_the_web_settled_already_is_not_written_again(db):
    participant, job_id = pending_turn(db)
    delivered = datetime.now(UTC).replace(microsecond=0)
    # The participant's next message came first: the web settled the turn, delivery and all.
    web_settled = {**answer_of(job_id), "deliveredAt": delivered.isoformat()}
    assert sessions.settle_turn(db, participant, job_id, web_settled)
    settled = conversation(db, participant)
    assert ship_with_delivery(db, participant, job_id, delivered) == 0
    assert conversation(db, participant) == settled


def test_a_delivery_after_the_turn_was_settled_is_noted(db):
    participant, job_id = pending_turn(db)
    assert sessions.settle_turn(db, participant, job_id, answer_of(job_id))
    delivered = datetime.now(UTC).replace(microsecond=0)

    record_batch(db, [], {job_id: Delivery(participant, delivered)})

    assert conversation(db, participant)["messages"][-1]["deliveredAt"] == delivered


def test_a_failed_turn_is_marked_on_the_message_and_a_delivery_never_touches_it(db):
    participant, job_id = pending_turn(db)
    failed = {"error": "The model call failed.", "failedAt": utc_iso()}
    delivered = datetime.now(UTC).replace(microsecond=0)

    record_batch(
        db,
        [ShippedAnswer(participant, job_id, failed)],
        {job_id: Delivery(participant, delivered)},
    )

    message = conversation(db, participant)["messages"][-1]
    assert message["role"] == "user" and message["error"] == "The model call failed."
    assert "deliveredAt" not in message


def test_a_batch_for_an_erased_session_writes_nothing(db):
    participant, job_id = pending_turn(db)
    sessions.sessions(db).delete_one({"_id": participant})
    assert ship_with_delivery(db, participant, job_id, datetime.now(UTC)) == 0
    assert sessions.sessions(db).count_documents({"_id": participant}) == 0


def test_a_settled_session_read_locally_is_what_mongodb_holds(db):
    # The web goes on with the session it settled without reading it back.
    failure = {"error": "It failed.", "failedAt": utc_iso()}
    for ending in (answer_of, lambda _job: failure):
        participant, job_id = pending_turn(db)
        session, turn = conversation(db, participant), ending(job_id)
        assert sessions.settle_turn(db, participant, job_id, turn)
        assert sessions.with_turn_settled(session, job_id, turn) == conversation(db, participant)
