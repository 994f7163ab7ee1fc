"""POST /save and POST /check_participation against a real MongoDB-wire server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from pymongo import MongoClient

from devtools.servers import MongoServer
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.stack import PROLIFIC_CODE


def record(participant_id: str, **extra) -> dict:
    body = {
        "participantId": participant_id,
        "messages": [{"role": "user", "content": "hi"}],
        "tasks": {"q1": 3, "q2": "yes"},
        "condition": {"arm": "B"},
    }
    return {**body, **extra}


@pytest.fixture()
def collection(stack_env):
    mongo = MongoClient(stack_env["DATABASE_URL"], tz_aware=True)
    yield mongo[stack_env["DATABASE_NAME"]]["data"]
    mongo.close()


def test_save_stores_the_record_and_gives_the_code(client, collection, participant_id):
    answer = client.post("/save", json=record(participant_id))
    assert answer.status_code == 201
    assert answer.get_json() == {
        "message": "OK",
        "prolificCode": PROLIFIC_CODE,
        "prolificUrl": f"https://app.prolific.com/submissions/complete?cc={PROLIFIC_CODE}",
    }
    stored = collection.find_one({"_id": participant_id})
    assert list(stored) == ["_id", "messages", "tasks", "condition", "savedAt"]
    assert stored["tasks"] == {"q1": 3, "q2": "yes"}
    assert stored["condition"] == {"arm": "B"}
    assert isinstance(stored["savedAt"], datetime)
    assert stored["savedAt"].utcoffset().total_seconds() == 0


def test_second_save_is_304_and_never_overwrites(client, collection, participant_id):
    assert client.post("/save", json=record(participant_id)).status_code == 201
    again = client.post("/save", json=record(participant_id, condition="other"))
    assert again.status_code == 304
    assert collection.find_one({"_id": participant_id})["condition"] == {"arm": "B"}


def test_concurrent_saves_make_exactly_one_record(app, collection, participant_id):
    def save(index: int) -> int:
        body = record(participant_id, condition=index)
        return app.test_client().post("/save", json=body).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(save, range(32)))
    assert codes.count(201) == 1
    assert codes.count(304) == 31
    assert collection.count_documents({"_id": participant_id}) == 1


def test_condition_may_be_any_json(client, collection, participant_id):
    assert client.post("/save", json=record(participant_id, condition=None)).status_code == 201
    assert collection.find_one({"_id": participant_id})["condition"] is None


def test_check_participation_204_then_302(client, participant_id):
    before = client.post("/check_participation", json={"id": participant_id})
    assert before.status_code == 204
    assert before.data == b""
    client.post("/save", json=record(participant_id))
    after = client.post("/check_participation", json={"id": participant_id})
    assert after.status_code == 302
    assert after.get_json() == {"participated": True}
    assert "Location" not in after.headers


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [], "tasks": {}, "condition": 1}, "participantId"),
        (record("P", tasks=[1, 2]), "tasks"),
        (record("P", messages="x"), "messages"),
        ({"participantId": "P", "messages": [], "tasks": {}}, "condition"),
        (record({"$gt": ""}), "participantId"),
    ],
)
def test_save_rejects_bad_bodies_naming_the_field(client, body, field):
    answer = client.post("/save", json=body)
    assert answer.status_code == 400
    assert f"'{field}'" in answer.get_json()["error"]


@pytest.mark.parametrize("body", [{}, {"id": {"$ne": ""}}, {"id": ["a"]}, {"id": None}])
def test_check_participation_rejects_bad_ids(client, body):
    answer = client.post("/check_participation", json=body)
    assert answer.status_code == 400
    assert "'id'" in answer.get_json()["error"]


def test_database_down_is_503_not_already_exists(stack_env, tmp_path, participant_id):
    with MongoServer(directory=tmp_path, storage_path=tmp_path / "data") as mongo:
        app = create_app({**stack_env, "DATABASE_URL": mongo.url})
        mongo.stop()
        try:
            client = app.test_client()
            saved = client.post("/save", json=record(participant_id))
            checked = client.post("/check_participation", json={"id": participant_id})
        finally:
            close_services(app)
    assert saved.status_code == 503
    assert "database" in saved.get_json()["error"]
    assert checked.status_code == 503
