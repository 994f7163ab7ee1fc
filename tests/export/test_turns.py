"""`flask export turns --format csv`: one row per message, read by pandas as documented."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest

from studychat.export.csv_rows import TURN_COLUMNS
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.polling import poll_answer, wait_for
from tests.support.stack import fresh_example_study

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture()
def app(stack_env, tmp_path):
    made = create_app(stack_env | fresh_example_study(tmp_path))
    yield made
    close_services(made)


def test_turns_csv_has_a_row_per_message_with_timing_that_pandas_reads(app, tmp_path):
    client = app.test_client()
    participant = "T-" + uuid.uuid4().hex
    opened = client.post("/sessions", json={"participantId": participant}).get_json()
    token = opened["sessionToken"]
    job_id = client.post(
        "/chat", json={"sessionToken": token, "message": {"content": 'a, "quoted"\nline'}}
    ).get_json()["jobId"]
    reply = poll_answer(client, job_id).get_json()["response"]["choices"][0]["message"]["content"]
    legacy_id = "L-" + uuid.uuid4().hex
    legacy = {"messages": [{"role": "user", "content": "old way"}], "participantId": legacy_id}
    poll_answer(client, client.post("/chat", json=legacy).get_json()["jobId"])
    out = tmp_path / "turns.csv"

    def exported():
        result = app.test_cli_runner().invoke(
            args=["export", "turns", "--format", "csv", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        table = pd.read_csv(out, dtype={"content": str})
        mine = table[table.participantId == participant]
        delivered = len(mine) == 3 and pd.notna(mine.iloc[-1].deliveredAt)
        complete = delivered and (table.participantId == legacy_id).any()
        return [table] if complete else None  # a list: a DataFrame has no truth value

    table = wait_for(exported, timeout=30)[0]
    assert list(table.columns) == TURN_COLUMNS
    mine = table[table.participantId == participant].reset_index(drop=True)
    assert list(mine.role) == ["assistant", "user", "assistant"]
    assert list(mine.turn) == [1, 2, 3]
    assert list(mine.content) == [opened["messages"][0]["content"], 'a, "quoted"\nline', reply]
    assert set(mine.condition) == {opened["condition"]} and mine.studyHash.str.len().eq(64).all()
    answer = mine.iloc[2]
    times = pd.to_datetime(
        answer[["receivedAt", "queuedAt", "startedAt", "answeredAt", "deliveredAt"]], utc=True
    )
    assert times.is_monotonic_increasing
    assert answer.queueWaitS >= 0 and answer.modelS > 0 and answer.deliveryDelayS >= 0
    assert answer.totalTokens > 0 and answer.attempts == 1 and answer.model == "gpt-4o-mini"
    old = table[table.participantId == legacy_id].reset_index(drop=True)
    assert list(old.role) == ["user", "assistant"] and list(old.source) == ["legacy", "legacy"]
    assert old.content[0] == "old way"
