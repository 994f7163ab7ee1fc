"""GET /admin/budget: what the study has spent, what is in flight, and the caps."""

from __future__ import annotations

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
