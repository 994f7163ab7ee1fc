"""rq-dashboard at /admin/rq: behind the admin guard, reading our JSON jobs, scripts signed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from redis import Redis

from studychat.factory import create_app
from studychat.web.admin.dashboard import dashboard_redis_url
from studychat.web.services import close_services
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for

pytestmark = pytest.mark.timeout(120)

TOKEN = "admin-token-for-rq-dashboard-0123456"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]+)'")


@pytest.fixture()
def dashboard_app(own_stack_env) -> Iterator[Flask]:
    app = create_app(own_stack_env | {"ADMIN_TOKEN": TOKEN})
    yield app
    close_services(app)


def test_the_dashboard_url_carries_the_certificate_check_of_rediss_urls():
    assert dashboard_redis_url("redis://h:6379/0", "none") == "redis://h:6379/0"
    assert dashboard_redis_url("rediss://h:6380", "required") == "rediss://h:6380"
    url = dashboard_redis_url("rediss://:pw@h:6380/0?socket_timeout=5", "none")
    assert url == "rediss://:pw@h:6380/0?socket_timeout=5&ssl_cert_reqs=none"
    client = Redis.from_url(url)
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize("path", ["/admin/rq/", "/admin/rq/0/data/queues.json"])
def test_the_dashboard_needs_the_admin_token(dashboard_app, path):
    client = dashboard_app.test_client()
    assert client.get(path).status_code == 401
    assert client.get(path, headers=BEARER).status_code == 200


def test_the_dashboard_reads_our_json_jobs_queued_and_finished(
    dashboard_app, own_stack_env, start_worker, upstream
):
    client = dashboard_app.test_client()
    (job_id,) = start_chats(client, 1, participant_id="P-dashboard")
    listed = client.get("/admin/rq/0/data/jobs/chat/queued/8/asc/1.json", headers=BEARER)
    assert [job["id"] for job in listed.get_json()["jobs"]] == [job_id]
    queued = client.get(f"/admin/rq/0/data/job/{job_id}.json", headers=BEARER).get_json()
    assert (queued["status"], queued["origin"]) == ("queued", "chat")
    assert client.get(f"/admin/rq/0/view/job/{job_id}", headers=BEARER).status_code == 200
    start_worker(own_stack_env)
    assert poll_answer(client, job_id, timeout=30).status_code == 200

    def shown_finished():
        shown = client.get(f"/admin/rq/0/data/job/{job_id}.json", headers=BEARER).get_json()
        return shown if shown["status"] == "finished" else None

    # RQ's record of the success follows the answer within moments (success_batches).
    finished = wait_for(shown_finished, timeout=5)
    assert finished["result"]["model"] == "gpt-4o-mini"
    workers = client.get("/admin/rq/0/data/workers.json", headers=BEARER).get_json()["workers"]
    assert [worker["queues"] for worker in workers] == [["chat"]]


def test_only_the_pages_own_inline_script_may_run(dashboard_app):
    client = dashboard_app.test_client()
    nonces = []
    for _ in range(2):
        answer = client.get("/admin/rq/0/view/workers", headers=BEARER)
        policy = answer.headers["Content-Security-Policy"]
        (nonce,) = NONCE.findall(policy)
        assert "'unsafe-inline'" not in policy.split("style-src")[0]
        assert "frame-ancestors 'none'" in policy
        assert f'<script type="text/javascript" nonce="{nonce}">' in answer.get_data(as_text=True)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


# What a fuzzer sent that rq-dashboard itself answered with a 500.
BAD_DASHBOARD_REQUESTS = [
    ("get", "/admin/rq/3/view", 404),
    ("get", "/admin/rq/0/view/job/0", 404),
    ("get", "/admin/rq/0/data/job/0.json", 404),
    ("get", "/admin/rq/0/view/job/a%20b", 404),
    ("get", "/admin/rq/0/data/jobs/chat/nope/10/asc/1.json", 404),
    ("get", "/admin/rq/0/data/jobs/chat/queued/ten/asc/1.json", 400),
    ("get", "/admin/rq/0/data/jobs/chat/queued/10/sideways/1.json", 400),
    ("get", "/admin/rq/0/data/jobs/%C3%B5%11/queued/10/asc/1.json", 404),
    ("post", "/admin/rq/job/0/requeue", 404),
    ("post", "/admin/rq/job/0/delete", 200),  # rq-dashboard's own {"status": "ERROR"}
    ("post", "/admin/rq/job/%F2%85%B9%A1x/delete", 404),
    ("post", "/admin/rq/queue/0/compact", 404),
]


@pytest.mark.parametrize(("method", "path", "status"), BAD_DASHBOARD_REQUESTS)
def test_bad_ids_and_names_get_a_json_4xx_never_a_500(dashboard_app, method, path, status):
    answer = getattr(dashboard_app.test_client(), method)(path, headers=BEARER)
    assert answer.status_code == status
    assert answer.get_json()["error" if status >= 400 else "status"]


def test_compacting_the_empty_chat_queue_has_nothing_to_do(dashboard_app, connection):
    client = dashboard_app.test_client()
    start_chats(client, 1)  # the chat queue is known to RQ from its first job on
    connection.delete("rq:queue:chat")
    answer = client.post("/admin/rq/queue/chat/compact", headers=BEARER)
    assert (answer.status_code, answer.get_json()) == (200, {"status": "OK"})
