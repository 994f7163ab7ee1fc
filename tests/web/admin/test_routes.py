"""GET /admin/budget: what the study has spent, what is in flight, and the caps."""

from __future__ import annotations

import csv
import io

import pytest
from redis import Redis

from studychat.chat import budgets
from studychat.factory import create_app
from studychat.web.services import close_services, services

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def admin_app(stack_env):
    app = create_app(
        stack_env
        | {"ADMIN_TOKEN": TOKEN, "STUDY_TOKEN_BUDGET": "5000000", "PARTICIPANT_TOKEN_BUDGET": ""}
    )
    yield app
    close_services(app)


def test_budget_report(admin_app):
    client = admin_app.test_client()
    connection = Redis.from_url(services(admin_app).settings.REDIS_URL)
    before = int(connection.get(budgets.STUDY_SPENT) or 0)
    connection.incrby(budgets.STUDY_SPENT, 1234)
    connection.close()
    answer = client.get("/admin/budget", headers=AUTH)
    assert answer.status_code == 200
    report = answer.get_json()
    assert report["study"]["spent"] >= before + 1234
    assert report["study"]["cap"] == 5000000
    assert report["participantCap"] is None
    assert report["participant"] is None
    assert answer.headers["Cache-Control"] == "no-store"


def test_budget_report_of_one_participant(admin_app, participant_id):
    connection = Redis.from_url(services(admin_app).settings.REDIS_URL)
    caps = budgets.Caps(None, 5000000)
    try:
        assert budgets.admit(connection, "job-admin-1", participant_id, 70, caps, 600) is None
        budgets.record_usage(connection, "job-admin-0", participant_id, {"total_tokens": 30})
        answer = admin_app.test_client().get(
            f"/admin/budget?participantId={participant_id}", headers=AUTH
        )
        assert answer.get_json()["participant"] == {"spent": 30, "inFlight": 70, "cap": None}
    finally:
        budgets.record_usage(connection, "job-admin-1", participant_id, {})  # free the hold
        connection.close()


def test_budget_report_refuses_a_bad_participant_id(admin_app):
    answer = admin_app.test_client().get("/admin/budget?participantId=", headers=AUTH)
    assert answer.status_code == 400
    assert "participantId" in answer.get_json()["error"]


def test_every_export_downloads_as_the_command_line_writes_it(admin_app, participant_id):
    client = admin_app.test_client()
    record = {"participantId": participant_id, "messages": [], "tasks": {"q.1": 1}, "condition": 0}
    assert client.post("/save", json=record).status_code == 201
    runner = admin_app.test_cli_runner()
    for name in ("data.jsonl", "chat_log.csv", "turns.csv", "sessions.jsonl", "data-tasks.csv"):
        answer = client.get(f"/admin/export/{name}", headers=AUTH)
        assert answer.status_code == 200, name
        assert answer.headers["Content-Disposition"] == f"attachment; filename={name}"
        text = answer.get_data(as_text=True)
        if name == "data.jsonl":
            assert participant_id in text and '"tasks":{"q.1":1}' in text  # verbatim key
            assert text == runner.invoke(args=["export", "data"]).stdout
        if name == "turns.csv":
            assert text.startswith("participantId,source,condition,studyHash,turn,role,content")
        if name == "data-tasks.csv":
            assert 'tasks["q.1"]' in next(csv.reader(io.StringIO(text)))  # a column of its own
    assert client.get("/admin/export/secrets.txt", headers=AUTH).status_code == 404
    assert client.get("/admin/export/data.jsonl").status_code == 401
