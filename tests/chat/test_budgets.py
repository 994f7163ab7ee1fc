"""Token budgets: caps per participant and per study, enforced before any upstream call."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis import Redis

from devtools.servers import RedisServer, WorkerProcess
from studychat.chat import budgets
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.polling import poll_answer
from tests.support.stack import process_env
from tests.support.upstream import control, upstream_requests

TOKEN_LIMIT = 300  # GPT_TOKEN_LIMIT of stack_env


@pytest.fixture(scope="module")
def budget_redis(tmp_path_factory) -> Redis:
    """A Redis of this module alone: the study's counters start at zero."""
    with RedisServer(directory=tmp_path_factory.mktemp("budget-redis")) as server:
        connection = Redis.from_url(server.url)
        yield connection
        connection.close()


@pytest.fixture(scope="module")
def budget_env(stack_env, budget_redis) -> dict[str, str]:
    kwargs = budget_redis.connection_pool.connection_kwargs
    return stack_env | {"REDIS_URL": f"redis://127.0.0.1:{kwargs['port']}/0"}


@pytest.fixture(scope="module")
def budget_worker(budget_env, tmp_path_factory):
    """The real worker on this module's Redis: it records what each call cost."""
    directory: Path = tmp_path_factory.mktemp("budget-worker")
    with WorkerProcess(process_env(budget_env), directory=directory) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh_counters(budget_redis):
    """Every test starts with nothing spent and nothing held."""
    for key in budget_redis.scan_iter("budget:*"):
        budget_redis.delete(key)


@pytest.fixture()
def make_app(budget_env):
    """Build apps with given caps on this module's Redis."""
    made = []

    def build(**caps: str):
        app = create_app(budget_env | caps)
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


def chat(client, text: str, participant_id: str | None = None):
    body: dict = {"messages": [{"role": "user", "content": text}]}
    if participant_id:
        body["participantId"] = participant_id
    return client.post("/chat", json=body)


def seen_by_upstream(upstream, marker: str) -> int:
    """Completion requests the upstream received whose text carries `marker`."""
    return sum(marker in str(entry["body"]["messages"]) for entry in upstream_requests(upstream))


def charge_of(text: str) -> int:
    return budgets.provisional_charge([{"role": "user", "content": text}], TOKEN_LIMIT)


def test_provisional_charge_bounds_the_cost():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Grüße", "image": "data:image/png;base64,AAAA"},
    ]
    expected = len(b"Be brief.") + len("Grüße".encode()) + 8 * 3 + 4000 + 100
    assert budgets.provisional_charge(messages, 100) == expected


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, 7),
        ({"prompt_tokens": 3, "completion_tokens": 4}, 7),
        ({"total_tokens": "lots", "prompt_tokens": 2}, 2),
        ({"total_tokens": -5, "completion_tokens": True}, 0),
        (None, 0),
    ],
)
def test_usage_tokens_trusts_only_counts(usage, tokens):
    assert budgets.usage_tokens(usage) == tokens


def test_spent_participant_budget_is_429_before_any_upstream_call(
    make_app, budget_worker, upstream, participant_id
):
    client = make_app(PARTICIPANT_TOKEN_BUDGET="1").test_client()
    marker = uuid.uuid4().hex
    first = chat(client, f"first {marker}", participant_id)
    assert first.status_code == 202
    assert poll_answer(client, first.get_json()["jobId"]).status_code == 200
    refused = chat(client, f"second {marker}", participant_id)
    assert refused.status_code == 429
    assert refused.get_json() == {
        "error": "This participant's token budget is spent; no more chat turns can be started."
    }
    assert seen_by_upstream(upstream, marker) == 1
    # Another participant has a budget of their own.
    other = chat(client, f"other {marker}", "P-other-" + marker)
    assert other.status_code == 202
    assert poll_answer(client, other.get_json()["jobId"]).status_code == 200


def test_spent_study_budget_refuses_everyone(make_app, budget_worker, upstream):
    client = make_app(STUDY_TOKEN_BUDGET="1").test_client()
    first = chat(client, "hello", "P-a-" + uuid.uuid4().hex)
    assert poll_answer(client, first.get_json()["jobId"]).status_code == 200
    for participant in ("P-b-" + uuid.uuid4().hex, None):
        refused = chat(client, "hello", participant)
        assert refused.status_code == 429
        assert "study's token budget is spent" in refused.get_json()["error"]


def test_usage_reported_by_the_model_is_what_counts(make_app, budget_worker, upstream):
    app = make_app(STUDY_TOKEN_BUDGET="1000000", PARTICIPANT_TOKEN_BUDGET="1000000")
    client = app.test_client()
    participant = "P-" + uuid.uuid4().hex
    job_id = chat(client, "count these words please", participant).get_json()["jobId"]
    usage = poll_answer(client, job_id).get_json()["response"]["usage"]
    with app.app_context():
        made = app.extensions["study_chat"]
        caps = budgets.Caps.from_settings(made.settings)
        study = budgets.study_spending(made.redis, caps)
        mine = budgets.participant_spending(made.redis, participant, caps)
    assert (study.spent, study.held) == (usage["total_tokens"], 0)
    assert (mine.spent, mine.held) == (usage["total_tokens"], 0)


def test_usage_is_counted_when_redis_has_forgotten_the_script(make_app, budget_worker, upstream):
    # As after a Redis restart: the worker's transaction names the script by its SHA1 alone.
    app = make_app(STUDY_TOKEN_BUDGET="1000000")
    client = app.test_client()
    with app.app_context():
        made = app.extensions["study_chat"]
        caps = budgets.Caps.from_settings(made.settings)
        reported = 0
        for turn in range(2):
            made.redis.script_flush()
            job_id = chat(client, f"turn {turn} after a flush").get_json()["jobId"]
            answer = poll_answer(client, job_id).get_json()
            reported += answer["response"]["usage"]["total_tokens"]
        study = budgets.study_spending(made.redis, caps)
    assert (study.spent, study.held) == (reported, 0)


def test_twenty_racing_chats_admit_only_what_the_cap_holds(make_app, budget_worker, upstream):
    marker = uuid.uuid4().hex
    text = f"race {marker}"
    cap = 3 * charge_of(text)
    app = make_app(STUDY_TOKEN_BUDGET=str(cap))
    # Slow answers keep the admitted chats in flight while all twenty arrive.
    control(upstream, {"latency": 3})

    def attempt(index: int):
        return chat(app.test_client(), text, f"P-race-{index}-{marker}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(attempt, range(20)))
    accepted = [a.get_json()["jobId"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 429]
    # Documented bound: while nothing has settled, admitted = ceil(cap / charge) = 3.
    assert len(accepted) == 3
    assert len(refused) == 17
    assert all("study's token budget" in a.get_json()["error"] for a in refused)
    client = app.test_client()
    answered = [poll_answer(client, job_id, timeout=30) for job_id in accepted]
    assert [answer.status_code for answer in answered] == [200, 200, 200]
    assert seen_by_upstream(upstream, marker) == 3
    spent = sum(a.get_json()["response"]["usage"]["total_tokens"] for a in answered)
    with app.app_context():
        study = budgets.study_spending(app.extensions["study_chat"].redis, budgets.Caps(None, cap))
    assert (study.spent, study.held) == (spent, 0)
    assert study.spent < cap + charge_of(text)  # overshoot below one call's cost


def test_lapsed_hold_frees_its_charge(budget_redis):
    caps = budgets.Caps(participant=None, study=100)
    assert budgets.admit(budget_redis, "job-a", "P1", 100, caps, hold_for=-1) is None
    # job-a never reports; its hold has lapsed, so it no longer blocks the study.
    assert budgets.admit(budget_redis, "job-b", "P1", 100, caps, hold_for=600) is None
    assert budgets.admit(budget_redis, "job-c", "P1", 100, caps, hold_for=600) == "study"
    held = budgets.study_spending(budget_redis, caps).held
    assert held == 100


def test_recording_usage_frees_the_hold_and_counts_once(budget_redis):
    caps = budgets.Caps(participant=500, study=None)
    assert budgets.admit(budget_redis, "job-1", "P9", 400, caps, hold_for=600) is None
    assert budgets.participant_spending(budget_redis, "P9", caps).held == 400
    assert budgets.admit(budget_redis, "job-2", "P9", 400, caps, hold_for=600) is None
    assert budgets.admit(budget_redis, "job-3", "P9", 400, caps, hold_for=600) == "participant"
    budgets.record_usage(budget_redis, "job-1", "P9", {"total_tokens": 40})
    budgets.record_usage(budget_redis, "job-2", "P9", {"total_tokens": 60})
    mine = budgets.participant_spending(budget_redis, "P9", caps)
    assert (mine.spent, mine.held) == (100, 0)
    assert budgets.admit(budget_redis, "job-3", "P9", 400, caps, hold_for=600) is None


def test_without_caps_nothing_is_held_but_spending_is_counted(budget_redis):
    caps = budgets.Caps(participant=None, study=None)
    assert budgets.admit(budget_redis, "job-x", "P5", 10_000, caps, hold_for=600) is None
    assert budgets.study_spending(budget_redis, caps).held == 0
    budgets.record_usage(budget_redis, "job-x", "P5", {"total_tokens": 12})
    assert budgets.study_spending(budget_redis, caps).spent == 12


def test_redis_down_is_503_not_an_unbudgeted_chat(stack_env, tmp_path, upstream):
    with RedisServer(directory=tmp_path) as redis_server:
        app = create_app(stack_env | {"REDIS_URL": redis_server.url, "STUDY_TOKEN_BUDGET": "9"})
        redis_server.stop()
    try:
        answer = chat(app.test_client(), "hello")
    finally:
        close_services(app)
    assert answer.status_code == 503
    assert "Redis" in answer.get_json()["error"]
