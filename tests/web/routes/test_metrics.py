"""GET /metrics: what the workers did, the live queue and budget, the web's own requests."""

from __future__ import annotations

import http.client
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import psutil
import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import MongoServer, WebServer
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.stack import fresh_example_study, process_env
from tests.support.system_tools import skip_or_fail

pytestmark = pytest.mark.timeout(120)

TOKEN = "admin-token-for-metrics-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels`, None when absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


@pytest.fixture()
def guarded_app(own_stack_env) -> Iterator[Flask]:
    app = create_app(own_stack_env | {"ADMIN_TOKEN": TOKEN, "STUDY_TOKEN_BUDGET": "100000"})
    yield app
    close_services(app)


def test_with_an_admin_token_metrics_need_it(guarded_app):
    client = guarded_app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401
        assert answer.get_json() == {
            "error": "/metrics needs the header Authorization: Bearer <ADMIN_TOKEN>."
        }
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="admin"'
    answer = client.get("/metrics", headers=BEARER)
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain; version=")
    assert "chat_jobs_total" in answer.get_data(as_text=True)


def test_without_an_admin_token_metrics_are_open(client):
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert sample(answer.get_data(as_text=True), "chat_redis_up") == 1


def test_metrics_report_the_workers_jobs_the_queue_and_the_budget(
    guarded_app, own_stack_env, start_worker, upstream
):
    client = guarded_app.test_client()
    job_ids = start_chats(client, 3)
    text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    assert sample(text, "chat_queue_depth") == 3
    assert sample(text, "chat_workers_alive") == 0
    start_worker(own_stack_env)
    answers = [poll_answer(client, job_id, timeout=30).get_json() for job_id in job_ids]
    spent = sum(answer["response"]["usage"]["total_tokens"] for answer in answers)

    def scraped_after_the_jobs_counts() -> str | None:
        # The worker writes its jobs' counts once a second (metrics_tally).
        text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
        return text if sample(text, "chat_jobs_total", outcome="finished") == 3 else None

    text = wait_for(scraped_after_the_jobs_counts, timeout=5)
    assert sample(text, "chat_jobs_total", outcome="finished") == 3
    assert sample(text, "chat_jobs_total", outcome="failed") == 0
    assert sample(text, "chat_tokens_total", kind="total") == spent
    assert sample(text, "chat_upstream_latency_seconds_count") == 3
    assert sample(text, "chat_upstream_latency_seconds_bucket", le="+Inf") == 3
    assert sample(text, "chat_turn_duration_seconds_count") == 3
    assert sample(text, "chat_queue_depth") == 0
    assert sample(text, "chat_workers_alive") == 1
    assert sample(text, "chat_study_tokens_spent") == spent
    assert sample(text, "chat_study_token_budget") == 100000
    assert sample(text, "chat_study_budget_left_tokens") == 100000 - spent


def test_metrics_count_the_transcripts_kept_in_redis_while_mongodb_is_down(
    guarded_app, own_stack_env, start_worker, upstream, tmp_path
):
    client = guarded_app.test_client()

    def transcripts_waiting() -> float | None:
        text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
        return sample(text, "chat_transcripts_waiting")

    assert transcripts_waiting() == 0
    with MongoServer(directory=tmp_path, storage_path=tmp_path / "mongo") as mongo:
        start_worker(own_stack_env | {"DATABASE_URL": mongo.url})
        mongo.stop()
        job_ids = start_chats(client, 2)
        assert [poll_answer(client, j).status_code for j in job_ids] == [200] * 2
        # Each job's answer and the note of its delivery wait for MongoDB, in Redis.
        assert transcripts_waiting() == 4
        mongo.start()
        wait_for(lambda: transcripts_waiting() == 0, timeout=60)


def test_web_requests_are_counted_by_route_pattern_and_status(guarded_app):
    client = guarded_app.test_client()
    before = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    client.post("/check_response", json={"jobId": "00000000-0000-4000-8000-000000000000"})
    client.get("/no/such/page")
    text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
    labels = {"method": "POST", "route": "/check_response", "status": "404"}
    grew = (sample(text, "http_requests_total", **labels) or 0) - (
        sample(before, "http_requests_total", **labels) or 0
    )
    assert grew == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert sample(text, "http_requests_total", **unmatched) >= 1
    assert "/no/such/page" not in text


def test_metrics_say_redis_is_down_rather_than_failing(guarded_app, own_redis):
    own_redis.stop()
    answer = guarded_app.test_client().get("/metrics", headers=BEARER)
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    assert sample(text, "chat_redis_up") == 0
    assert sample(text, "chat_jobs_total", outcome="finished") is None


def scrape(port: int) -> str:
    """GET /metrics on a new connection, as Prometheus does."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers=BEARER)
        answer = connection.getresponse()
        assert answer.status == 200
        return answer.read().decode()
    finally:
        connection.close()


def healthz(port: int) -> int | None:
    """Status of GET /healthz on a new connection, None when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def test_under_gunicorn_request_counts_outlive_the_process_that_served_them(
    own_app, own_stack_env, start_worker, tmp_path
):
    env = process_env(own_stack_env | {"ADMIN_TOKEN": TOKEN, "WEB_CONCURRENCY": "2"})
    with WebServer(env, directory=tmp_path) as web:
        for _ in range(30):
            assert healthz(web.port) == 200
        # Every process that served them dies; gunicorn starts new ones. The counts live in
        # the processes' shared directory, so whichever process answers still reports them.
        children = psutil.Process(web.pid).children()
        for child in children:
            child.kill()
        psutil.wait_procs(children, timeout=10)
        wait_for(lambda: len(psutil.Process(web.pid).children()) == 2 and healthz(web.port))
        ok = {"method": "GET", "route": "/healthz", "status": "200"}
        for _ in range(6):
            assert sample(scrape(web.port), "http_requests_total", **ok) >= 30
        # The worker's jobs reach every web process through Redis.
        start_worker(own_stack_env)
        client = own_app.test_client()
        (job_id,) = start_chats(client, 1)
        assert poll_answer(client, job_id, timeout=30).status_code == 200
        finished = {"outcome": "finished"}
        wait_for(lambda: sample(scrape(web.port), "chat_jobs_total", **finished) == 1, timeout=5)


def test_metrics_and_admin_figures_per_condition(own_stack_env, start_worker, tmp_path, upstream):
    """Assigned, active, saved and tokens per condition, the same in /metrics and /admin."""
    app = create_app(own_stack_env | fresh_example_study(tmp_path) | {"ADMIN_TOKEN": TOKEN})
    start_worker(own_stack_env)
    try:
        client = app.test_client()
        opened = [
            client.post("/sessions", json={"participantId": f"P-{n}-{uuid.uuid4().hex}"}).get_json()
            for n in range(4)
        ]
        first = opened[0]
        sent = client.post(
            "/chat", json={"sessionToken": first["sessionToken"], "message": {"content": "hi"}}
        )
        tokens = poll_answer(client, sent.get_json()["jobId"]).get_json()["response"]["usage"]
        assert client.post("/save", json={"sessionToken": first["sessionToken"]}).status_code == 201
        metrics = client.get("/metrics", headers=BEARER).get_data(as_text=True)
        stats = client.get("/admin/api/stats", headers=BEARER).get_json()["study"]
    finally:
        close_services(app)
    by_condition = {figures["condition"]: figures for figures in stats["conditions"]}
    condition, other = first["condition"], ({"empathic", "neutral"} - {first["condition"]}).pop()
    assert by_condition[condition] == {
        "condition": condition,
        "assigned": 2,
        "active": 1,
        "saved": 1,
        "tokens": tokens["total_tokens"],
    }
    assert (by_condition[other]["assigned"], by_condition[other]["tokens"]) == (2, 0)
    for name, figures in by_condition.items():
        for state in ("assigned", "active", "saved"):
            found = sample(metrics, "chat_condition_participants", condition=name, state=state)
            assert found == figures[state]
        assert sample(metrics, "chat_condition_tokens_total", condition=name) == figures["tokens"]


def promtool() -> str:
    """Prometheus's own checker: skipped where missing, failed in CI (.ci/run installs it)."""
    found = shutil.which("promtool")
    if found is None:
        skip_or_fail("promtool is not installed: apt-get install prometheus (.ci/run does)")
    return found


def test_prometheus_reads_every_metric_without_a_complaint(
    own_stack_env, start_worker, tmp_path, upstream
):
    checker = promtool()
    study = fresh_example_study(tmp_path) | {"STUDY_TOKEN_BUDGET": "100000"}
    app = create_app(own_stack_env | study | {"ADMIN_TOKEN": TOKEN})
    start_worker(own_stack_env)
    try:
        client = app.test_client()
        token = client.post("/sessions", json={"participantId": "P-promtool"}).get_json()
        sent = client.post(
            "/chat", json={"sessionToken": token["sessionToken"], "message": {"content": "hi"}}
        )
        assert poll_answer(client, sent.get_json()["jobId"]).status_code == 200

        def scraped_with_the_job() -> str | None:
            text = client.get("/metrics", headers=BEARER).get_data(as_text=True)
            return text if sample(text, "chat_jobs_total", outcome="finished") == 1 else None

        text = wait_for(scraped_with_the_job, timeout=5)
    finally:
        close_services(app)
    assert sample(text, "chat_condition_tokens_total", condition=token["condition"]) > 0
    checked = subprocess.run(
        [checker, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
