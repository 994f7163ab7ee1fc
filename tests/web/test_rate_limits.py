"""CHAT_RATE_LIMIT per session or participantId, CHAT_RATE_LIMIT_PER_IP per address, in Redis."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from redis import Redis

from devtools.servers import free_port
from studychat.factory import create_app
from studychat.study.sessions import token_key
from studychat.web.rate_limits import address_key, chat_client
from studychat.web.services import close_services
from tests.support.polling import poll_answer
from tests.support.stack import FRONTEND, fresh_example_study

pytestmark = pytest.mark.usefixtures("worker")  # queued chats are answered, not left behind

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def fresh_windows(stack_env):
    """Forget earlier tests' hits, so that each test sees its limit from the start."""
    connection = Redis.from_url(stack_env["REDIS_URL"])
    for key in connection.scan_iter("LIMITS:*"):
        connection.delete(key)
    connection.close()


@pytest.fixture()
def make_study_env(tmp_path):
    """Settings naming a copy of the example study under a name no other test uses."""
    return lambda: fresh_example_study(tmp_path)


@pytest.fixture()
def make_app(stack_env):
    """Build apps (think: web processes) with a tight limit on the session's Redis."""
    made = []

    def build(**settings: str):
        app = create_app(stack_env | {"CHAT_RATE_LIMIT": "3/minute", **settings})
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


def chat(client, participant_id: str | None = None, forwarded_for: str | None = None):
    body: dict = {"messages": HELLO}
    if participant_id is not None:
        body["participantId"] = participant_id
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/chat", json=body, headers=headers)


def test_fourth_chat_in_a_minute_is_429_json_with_retry_after(make_app, participant_id):
    client = make_app().test_client()
    accepted = [chat(client, participant_id) for _ in range(3)]
    assert [answer.status_code for answer in accepted] == [202, 202, 202]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in accepted] == ["2", "1", "0"]
    assert all("Retry-After" not in answer.headers for answer in accepted)
    refused = chat(client, participant_id)
    assert refused.status_code == 429
    assert refused.is_json
    assert refused.get_json()["error"].startswith("Too many chat requests: at most 3 per 1 minute")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_a_frontend_on_another_origin_may_read_retry_after(make_app, participant_id):
    client = make_app().test_client()
    for _ in range(3):
        chat(client, participant_id)
    refused = client.post(
        "/chat",
        json={"messages": HELLO, "participantId": participant_id},
        headers={"Origin": FRONTEND},
    )
    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == FRONTEND
    exposed = refused.headers["Access-Control-Expose-Headers"].lower()
    assert "retry-after" in exposed


def test_each_participant_has_a_limit_of_their_own(make_app, participant_id):
    client = make_app().test_client()
    for _ in range(3):
        chat(client, participant_id)
    assert chat(client, participant_id).status_code == 429
    assert chat(client, participant_id + "-other").status_code == 202


def test_the_limit_is_shared_by_all_web_processes(make_app, participant_id):
    first, second = make_app().test_client(), make_app().test_client()
    assert chat(first, participant_id).status_code == 202
    assert chat(second, participant_id).status_code == 202
    assert chat(first, participant_id).status_code == 202
    assert chat(second, participant_id).status_code == 429


def test_without_participant_the_address_ceiling_counts(make_app):
    client = make_app(CHAT_RATE_LIMIT_PER_IP="3/minute").test_client()
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    # A client cannot escape by forging X-Forwarded-For: the router appends the real address.
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        assert chat(client, forwarded_for=f"{forged}, {address}").status_code == 202
    assert chat(client, forwarded_for=f"4.4.4.4, {address}").status_code == 429
    assert chat(client, forwarded_for="198.51.100.9").status_code == 202


def test_with_no_proxy_forwarded_for_is_ignored(make_app):
    client = make_app(PROXY_FIX_X_FOR="0", CHAT_RATE_LIMIT_PER_IP="3/minute").test_client()
    answers = [chat(client, forwarded_for=f"198.51.100.{n}").status_code for n in range(4)]
    assert answers == [202, 202, 202, 429]  # all from the test client's own address


def test_only_chat_is_limited(make_app, participant_id):
    client = make_app().test_client()
    for _ in range(4):
        chat(client, participant_id)
    assert client.post("/check_participation", json={"id": participant_id}).status_code == 204
    polled = client.post("/check_response", json={"jobId": str(uuid.uuid4())})
    assert polled.status_code == 404


def test_empty_setting_turns_the_limit_off(make_app, participant_id):
    client = make_app(CHAT_RATE_LIMIT="").test_client()
    assert {chat(client, participant_id).status_code for _ in range(5)} == {202}


@pytest.mark.timeout(30)
def test_redis_down_is_503_and_records_still_work(make_app, participant_id):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    answer = chat(client, participant_id)
    assert answer.status_code == 503
    assert "Redis" in answer.get_json()["error"]
    record = {"participantId": participant_id, "messages": [], "tasks": {}, "condition": 1}
    assert client.post("/save", json=record).status_code == 201


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"participantId": "P7"}, "participant:P7"),
        ({"participantId": "P7", "sessionToken": "t0k3n"}, token_key("t0k3n")),
        ({"participantId": {"$ne": 1}}, None),
        ({"participantId": ""}, None),
        ({"participantId": "x" * 201}, None),
        ({"participantId": "P\ud83a"}, None),
        ([1, 2], None),
    ],
)
def test_chat_client(app, body, key):
    """A session counts by its token's hash; a malformed id counts only against the address."""
    environ = {"REMOTE_ADDR": "10.1.2.3"}
    with app.test_request_context("/chat", method="POST", json=body, environ_base=environ):
        assert chat_client() == key
        assert address_key() == "ip:10.1.2.3"


def test_inventing_a_new_participant_id_per_chat_gains_nothing_past_the_ceiling(make_app):
    """The issue's case: 5/minute per participant, 20/minute per address, 40 fresh ids."""
    client = make_app(CHAT_RATE_LIMIT="5/minute", CHAT_RATE_LIMIT_PER_IP="20/minute").test_client()
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    answers = [chat(client, f"P-{uuid.uuid4().hex}", forwarded_for=address) for _ in range(40)]
    codes = Counter(answer.status_code for answer in answers)
    assert codes == {202: 20, 429: 20}
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "from this address" in refused.get_json()["error"]
    assert int(refused.headers["Retry-After"]) > 0


def test_a_lab_of_sixty_behind_one_address_is_never_refused_with_default_limits(
    stack_env, make_study_env
):
    """60 participants, 60 sessions and 4 legacy turns each within one minute, default limits."""
    defaults = {name: value for name, value in stack_env.items() if "RATE_LIMIT" not in name}
    app = create_app(defaults | make_study_env())
    try:
        client = app.test_client()
        lab = "192.0.2." + str(uuid.uuid4().int % 250 + 1)
        headers = {"X-Forwarded-For": lab}
        sessions = [
            client.post(
                "/sessions", json={"participantId": f"P-{uuid.uuid4().hex}"}, headers=headers
            )
            for _ in range(60)
        ]
        assert Counter(answer.status_code for answer in sessions) == {201: 60}
        # The legacy frontend sends no participantId: only the address ceiling applies.
        turns = [chat(client, forwarded_for=lab) for _ in range(240)]
        assert Counter(answer.status_code for answer in turns) == {202: 240}
    finally:
        close_services(app)


def test_a_session_counts_against_its_own_limit_never_a_client_supplied_id(
    make_app, make_study_env, participant_id
):
    client = make_app(CHAT_RATE_LIMIT="2/minute", **make_study_env()).test_client()
    token = client.post("/sessions", json={"participantId": participant_id}).get_json()[
        "sessionToken"
    ]
    for text in ("one", "two"):
        sent = client.post("/chat", json={"sessionToken": token, "message": {"content": text}})
        assert sent.status_code == 202
        poll_answer(client, sent.get_json()["jobId"])
    third = client.post("/chat", json={"sessionToken": token, "message": {"content": "three"}})
    assert third.status_code == 429
    # The participant's id names another bucket: a session's is its server-issued token.
    assert chat(client, participant_id).status_code == 202
    other = client.post("/sessions", json={"participantId": participant_id + "-b"}).get_json()
    sent = client.post(
        "/chat", json={"sessionToken": other["sessionToken"], "message": {"content": "hi"}}
    )
    assert sent.status_code == 202
