"""Every turn's timing and provenance, in chat_log and in the session's conversation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devtools.fake_openai import SYSTEM_FINGERPRINT
from studychat.chat.provenance import as_dates, utc_iso
from studychat.factory import create_app
from studychat.store.database import CHAT_LOG_COLLECTION, DATA_COLLECTION
from studychat.web.services import close_services
from tests.support.polling import poll_answer, wait_for
from tests.support.stack import fresh_example_study

pytestmark = pytest.mark.usefixtures("worker")

ORDER = ["receivedAt", "queuedAt", "startedAt", "firstTokenAt", "answeredAt", "releasedAt"]


def test_utc_iso_has_milliseconds_and_as_dates_reads_it_back():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert utc_iso(moment) == "2026-01-02T03:04:05.678+00:00"
    assert as_dates({"answeredAt": utc_iso(moment), "content": "x"}) == {
        "answeredAt": moment.replace(microsecond=678000),
        "content": "x",
    }


@pytest.fixture()
def study_client(stack_env, tmp_path):
    app = create_app(stack_env | fresh_example_study(tmp_path))
    yield app.test_client()
    close_services(app)


def in_order(facts: dict, names: list[str]) -> list[datetime]:
    times = [facts[name] for name in names if facts.get(name) is not None]
    assert all(isinstance(t, datetime) for t in times), facts
    assert times == sorted(times), {name: facts.get(name) for name in names}
    return times


@pytest.mark.parametrize("transport", ["stream", "poll"])
def test_timing_and_provenance_of_a_session_turn(study_client, db, participant_id, transport):
    opened = study_client.post("/sessions", json={"participantId": participant_id}).get_json()
    body = {"sessionToken": opened["sessionToken"], "message": {"content": "timing please"}}
    body["stream"] = transport == "stream"
    job_id = study_client.post("/chat", json=body).get_json()["jobId"]
    if transport == "stream":
        assert "event: done" in study_client.get(f"/stream/{job_id}").get_data(as_text=True)
    else:
        assert poll_answer(study_client, job_id).status_code == 200

    def logged():
        entry = db[CHAT_LOG_COLLECTION].find_one({"_id": job_id})
        return entry if entry and entry.get("deliveredAt") else None

    entry = wait_for(logged, timeout=20)
    times = in_order(entry, [*ORDER, "deliveredAt"])
    assert len(times) == (7 if transport == "stream" else 6)  # firstTokenAt: streamed only
    assert (entry["firstTokenAt"] is not None) == (transport == "stream")
    assert entry["model"] == "gpt-4o-mini"
    assert entry["systemFingerprint"] == SYSTEM_FINGERPRINT
    condition = opened["condition"]
    sent = {"empathic": 0.9, "neutral": 0.7}[condition]
    assert entry["parameters"] == {"temperature": sent, "max_tokens": 400}
    assert entry["usage"]["total_tokens"] > 0 and entry["attempts"] == 1
    assert entry["condition"] == condition and len(entry["studyHash"]) == 64

    def delivered_in_session():
        session = db["sessions"].find_one({"_id": participant_id})
        answer = session["messages"][-1]
        return session if answer.get("deliveredAt") else None

    messages = wait_for(delivered_in_session, timeout=20)["messages"]
    question, answer = messages[-2], messages[-1]
    assert question["receivedAt"] == entry["receivedAt"]
    in_order({**answer, "receivedAt": question["receivedAt"]}, [*ORDER, "deliveredAt"])
    for name in ("systemFingerprint", "parameters", "attempts", "studyHash", "queuedAt"):
        assert answer[name] == entry[name], name
    study_client.post("/save", json={"sessionToken": opened["sessionToken"]})
    record = db[DATA_COLLECTION].find_one({"_id": participant_id})
    assert record["messages"][-1]["deliveredAt"] == answer["deliveredAt"]


def test_a_legacy_turn_records_its_timing_too(client, db, participant_id):
    body = {
        "messages": [{"role": "user", "content": "legacy timing"}],
        "participantId": participant_id,
    }
    job_id = client.post("/chat", json=body).get_json()["jobId"]
    poll_answer(client, job_id)

    def logged():
        entry = db[CHAT_LOG_COLLECTION].find_one({"_id": job_id})
        return entry if entry and entry.get("deliveredAt") else None

    entry = wait_for(logged, timeout=20)
    in_order(entry, ["receivedAt", "queuedAt", "startedAt", "answeredAt", "deliveredAt"])
    assert entry["parameters"] == {"max_tokens": 300}
