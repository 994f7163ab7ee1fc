"""The live study page's figures, read from a real stack after real chats and saves."""

from __future__ import annotations

import time

import pytest

from devtools.servers import free_port
from studychat.chat.budgets import Spending
from studychat.store.database import make_mongo_client
from studychat.web.admin import stats as admin_stats
from studychat.web.services import services
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(120)


def test_error_rate_is_failed_over_all_and_none_without_chats():
    assert admin_stats.error_rate(0, 0) is None
    assert admin_stats.error_rate(3, 1) == 0.3333
    assert admin_stats.error_rate(4, 0) == 0


def test_tokens_left_count_what_chats_in_flight_hold():
    assert admin_stats.token_figures(Spending(spent=700, held=200, cap=1000)) == {
        "spent": 700,
        "held": 200,
        "cap": 1000,
        "left": 100,
    }
    assert admin_stats.token_figures(Spending(spent=1200, held=0, cap=1000))["left"] == 0
    assert admin_stats.token_figures(Spending(spent=5, held=0, cap=None))["left"] is None


def test_participants_are_none_while_mongodb_is_unreachable():
    client = make_mongo_client(f"mongodb://127.0.0.1:{free_port()}")
    started = time.monotonic()
    try:
        assert admin_stats.participants_saved(client["study"]) is None
    finally:
        client.close()
    assert time.monotonic() - started < admin_stats.COUNT_TIMEOUT_S + 1


def save(client, participant_id: str) -> None:
    record = {"participantId": participant_id, "messages": [], "tasks": {}, "condition": 1}
    assert client.post("/save", json=record).status_code == 201


def test_the_figures_after_real_saves_chats_and_a_failure(
    own_app, own_stack_env, start_worker, upstream
):
    start_worker(own_stack_env)
    client = own_app.test_client()
    save(client, "P-one")
    save(client, "P-two")
    answers = [poll_answer(client, job_id, timeout=30) for job_id in start_chats(client, 2)]
    control(upstream, {"faults": [{"status": 400}]})
    (failing,) = start_chats(client, 1)
    assert poll_answer(client, failing, timeout=30).status_code == 502
    spent = sum(answer.get_json()["response"]["usage"]["total_tokens"] for answer in answers)

    def figures():
        with own_app.app_context():
            stats = admin_stats.study_stats(services(), chart_minutes=30)
        # RQ files the failed job away a moment after its answer is stored, and the worker
        # writes its jobs' counts once a second (metrics_tally).
        counted = sum(stats["jobsTotal"].values()) == 3
        # The transcript shipper has put every entry in MongoDB (within a second or two).
        shipped = stats["transcriptsWaiting"] == 0
        return stats if stats["jobsRunning"] == 0 and counted and shipped else None

    stats = wait_for(figures, timeout=10)
    assert stats["participantsSaved"] == 2
    assert (stats["chatsLastHour"], stats["errorsLastHour"]) == (3, 1)
    assert stats["errorRateLastHour"] == 0.3333
    assert (stats["queueDepth"], stats["workersAlive"]) == (0, 1)
    assert stats["tokens"] == {"spent": spent, "held": 0, "cap": None, "left": None}
    assert stats["jobsTotal"] == {"finished": 2, "failed": 1}
    series = stats["series"]
    assert len(series) == 30
    assert series[-1]["start"] <= stats["generatedAt"] < series[-1]["start"] + 60
    assert sum(minute["chats"] for minute in series) == 3
    assert sum(minute["errors"] for minute in series) == 1
