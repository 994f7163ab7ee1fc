"""Request validation: bounded chats, inline images only, job ids, safely stored free-form JSON."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
from pymongo import MongoClient

from studychat.factory import create_app
from studychat.web.schemas import (
    IMAGE_PATTERN,
    MAX_JSON_DEPTH,
    ChatRequest,
    RequestLimits,
    bounded_models,
    image_bytes,
)
from studychat.web.services import close_services

pytestmark = pytest.mark.usefixtures("worker")  # queued chats are answered, not left behind

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
    "hQGAhKmMIQAAAABJRU5ErkJggg=="
)
LIMITS = {
    "MAX_MESSAGES": "4",
    "MAX_MESSAGE_CHARS": "50",
    "MAX_TOTAL_CHARS": "120",
    "MAX_IMAGE_BYTES": "300",
}


def data_url(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def user(content: str = "hi", **extra) -> dict:
    return {"role": "user", "content": content, **extra}


@pytest.fixture()
def tight(stack_env):
    """An app with small message limits."""
    app = create_app({**stack_env, **LIMITS})
    yield app.test_client()
    close_services(app)


def error_of(answer) -> str:
    assert answer.status_code == 400, answer.get_data(as_text=True)
    return answer.get_json()["error"]


@pytest.mark.parametrize(
    ("messages", "field", "words"),
    [
        ([user()] * 5, "messages", "at most 4 items"),
        ([user("x" * 51)], "messages[0].content", "at most 50 characters"),
        ([user("x" * 50)] * 3, "messages", "150 characters together; at most 120"),
        ([user(image="https://example.org/cat.png")], "messages[0].image", "links to images"),
        ([user(image="data:image/svg+xml;base64,PHN2Zz4=")], "messages[0].image", "base64"),
        ([user(image="data:image/png;base64,not base64!")], "messages[0].image", "base64"),
        ([user(image=data_url("png", b"MZ\x90\x00 not an image"))], "messages[0].image", "PNG"),
        (
            [user(image=data_url("png", b"\x89PNG\r\n\x1a\n" + b"0" * 293))],
            "messages[0].image",
            "exceeds 300 bytes",
        ),
        ([{"role": "system", "content": "x", "image": PNG}], "messages[0].image", "user message"),
        ([user(image=["a"])], "messages[0].image", "string"),
    ],
)
def test_chat_limits_answer_400_naming_the_field(tight, messages, field, words):
    error = error_of(tight.post("/chat", json={"messages": messages}))
    assert f"'{field}'" in error
    assert words in error


def test_chat_within_the_limits_is_queued(tight):
    messages = [
        {"role": "system", "content": "s" * 50},
        user("u" * 50, image=data_url("png", b"\x89PNG\r\n\x1a\n" + b"0" * 292)),
        {"role": "assistant", "content": "a" * 18},  # 120 characters in all
        user(image=None),
    ]
    answer = tight.post("/chat", json={"messages": messages, "participantId": "P-limits"})
    assert answer.status_code == 202


@pytest.mark.parametrize(
    "image",
    [
        data_url("png", b"\x89PNG\r\n\x1a\nrest"),
        data_url("jpeg", b"\xff\xd8\xff\xe0rest"),
        data_url("gif", b"GIF89arest"),
        data_url("webp", b"RIFF\x00\x00\x00\x00WEBPVP8 "),
    ],
)
def test_every_accepted_image_type(tight, image):
    assert tight.post("/chat", json={"messages": [user(image=image)]}).status_code == 202


@pytest.mark.parametrize("participant_id", [{"$ne": None}, ["P1"], None, "", 5, "x" * 201, True])
def test_participant_id_must_be_a_bounded_string(tight, participant_id):
    body = {"messages": [user()], "participantId": participant_id}
    if participant_id is None:
        assert tight.post("/chat", json=body).status_code == 202  # null means "not given"
        return
    assert "'participantId'" in error_of(tight.post("/chat", json=body))


def test_a_real_job_id_has_the_accepted_shape(tight):
    job_id = tight.post("/chat", json={"messages": [user()]}).get_json()["jobId"]
    assert str(uuid.UUID(job_id)) == job_id
    answer = tight.post("/check_response", json={"jobId": job_id})
    assert answer.status_code == 200  # processing or answered: the id is accepted


def test_absurdly_nested_body_is_400_not_a_crash(tight):
    deep = "[" * 50_000 + "]" * 50_000
    for path in ("/chat", "/save", "/check_participation"):
        answer = tight.post(path, data=deep, content_type="application/json")
        assert answer.status_code == 400
        assert answer.is_json


def test_image_bytes_counts_the_decoded_size():
    for size in range(0, 12):
        assert image_bytes(data_url("png", b"x" * size)) == size


def test_limits_appear_in_the_json_schema():
    limits = RequestLimits(
        max_messages=7, max_message_chars=70, max_total_chars=700, max_image_bytes=3000
    )
    schema = bounded_models(limits)[ChatRequest].model_json_schema()
    assert schema["properties"]["messages"]["maxItems"] == 7
    message = schema["$defs"]["ChatMessage"]["properties"]
    assert message["content"]["maxLength"] == 70
    image = message["image"]["anyOf"][0]
    assert image["pattern"].startswith("^data:image/(png|jpeg|gif|webp);base64,")
    assert image["maxLength"] == len("data:image/jpeg;base64,") + 4000


@pytest.fixture()
def collection(stack_env):
    mongo = MongoClient(stack_env["DATABASE_URL"], tz_aware=True)
    yield mongo[stack_env["DATABASE_NAME"]]["data"]
    mongo.close()


def record(participant_id: str, **extra) -> dict:
    return {"participantId": participant_id, "messages": [], "tasks": {}, "condition": 1, **extra}


def test_keys_with_dots_and_dollars_are_stored_verbatim(client, collection, participant_id):
    """What the frontend sends is what the researcher gets: an insert is not a query."""
    tasks = {"q1.2": 3, "$where": "sleep(1000)", "nested": {"$gt": {"a.b": [{"$ne": 1}]}}}
    body = record(
        participant_id,
        tasks=tasks,
        condition={"$set": {"arm": "B"}},
        messages=[{"role": "user", "content": "hi", "meta.x": 1}],
    )
    # Sent as a frontend sends it (Flask's test client would sort the keys).
    sent = client.post("/save", data=json.dumps(body), content_type="application/json")
    assert sent.status_code == 201
    stored = collection.find_one({"_id": participant_id})
    assert stored["tasks"] == tasks
    assert list(stored["tasks"]) == ["q1.2", "$where", "nested"]  # in the order sent
    assert stored["condition"] == {"$set": {"arm": "B"}}
    assert stored["messages"] == [{"role": "user", "content": "hi", "meta.x": 1}]


def test_keys_with_nul_are_refused(client, participant_id):
    body = record(participant_id, tasks={"a": {"b\u0000c": 1}})
    error = error_of(client.post("/save", json=body))
    assert "'tasks'" in error
    assert "NUL" in error


@pytest.mark.parametrize("field", ["tasks", "messages", "condition"])
def test_free_form_json_nesting_is_bounded(client, participant_id, field):
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = {"k": deep}
    value = {"deep": deep} if field == "tasks" else [deep] if field == "messages" else deep
    error = error_of(client.post("/save", json=record(participant_id, **{field: value})))
    assert f"'{field}'" in error
    assert f"deeper than {MAX_JSON_DEPTH}" in error


def test_nesting_within_the_bound_is_stored(client, collection, participant_id):
    deep: object = "leaf"
    for _ in range(MAX_JSON_DEPTH - 1):
        deep = {"k": deep}
    assert client.post("/save", json=record(participant_id, tasks={"d": deep})).status_code == 201
    assert json.dumps(collection.find_one({"_id": participant_id})["tasks"]).count("{") == 32


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('{"tasks": {"n": 36893488147419103233}}', "tasks", "does not fit in 64 bits"),
        ('{"condition": [-9223372036854775809]}', "condition", "does not fit in 64 bits"),
        # As the document states: 1e300 is an integer to JSON Schema, beyond the range.
        ('{"tasks": {"f": 1e300}}', "tasks", "does not fit in 64 bits"),
        ('{"tasks": {"t": "\\ud83a"}}', "tasks", "not valid Unicode"),
        ('{"tasks": {"\\udc00": 1}}', "tasks", "invalid Unicode"),
        ('{"messages": ["\\ud83a"]}', "messages", "not valid Unicode"),
        ('{"participantId": "P\\ud83a"}', "participantId", "unicode"),
    ],
)
def test_values_mongodb_cannot_store_are_400(client, participant_id, body, field, words):
    fields = {"participantId": participant_id, "messages": [], "tasks": {}, "condition": 1}
    raw = json.dumps(fields)[:-1] + ", " + body[1:]  # later keys win
    error = error_of(client.post("/save", data=raw, content_type="application/json"))
    assert f"'{field}'" in error
    assert words in error


def test_largest_64_bit_numbers_are_stored(client, collection, participant_id):
    tasks = {"max": 2**63 - 1, "min": -(2**63), "big": 9.2e18, "half": 0.5, "two": 2.0}
    assert client.post("/save", json=record(participant_id, tasks=tasks)).status_code == 201
    assert collection.find_one({"_id": participant_id})["tasks"] == tasks


SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg": b"\xff\xd8\xff",
    "gif": b"GIF89a",
}


@pytest.mark.parametrize("kind", sorted(SIGNATURES))
def test_the_documented_image_pattern_accepts_every_length_of_a_known_image(kind):
    # The document's pattern is what outside tools generate from: it must hold all that
    # the server checks, so every image it allows is accepted, whatever its length.
    for extra in range(1, 40):
        image = data_url(kind, SIGNATURES[kind] + bytes(range(extra)))
        assert re.match(IMAGE_PATTERN, image), image
    webp = b"RIFF" + bytes([7, 200, 0, 1]) + b"WEBP" + b"VP8 "
    assert re.match(IMAGE_PATTERN, data_url("webp", webp))


@pytest.mark.parametrize(
    "data", [b"MZ\x90\x00 not an image", b"\x89PNX\r\n\x1a\n0", b"RIFF1234WAVEfmt ", b"GIF90a"]
)
def test_the_documented_image_pattern_refuses_other_files(data):
    assert not re.match(IMAGE_PATTERN, data_url("png", data))
