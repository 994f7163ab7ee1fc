"""The app factory: JSON errors for every failure, CORS, body limits, Redis outage."""

from __future__ import annotations

import uuid

import pytest

from devtools.servers import free_port
from studychat.factory import create_app
from studychat.web.services import close_services, services
from tests.support.stack import FRONTEND, ROOT


def test_unknown_route_is_json_404(client):
    answer = client.get("/nope")
    assert answer.status_code == 404
    assert answer.is_json
    assert "/nope" in answer.get_json()["error"]


def test_wrong_method_is_json_405(client):
    answer = client.get("/chat")
    assert answer.status_code == 405
    assert answer.get_json()["error"] == "Method GET is not allowed on /chat; use POST."
    assert answer.headers["Allow"] == "OPTIONS, POST"  # RFC 9110 requires it on a 405


@pytest.mark.parametrize("path", ["/check_response", "/save", "/healthz", "/stream/0"])
def test_every_405_names_the_allowed_methods(client, path):
    answer = client.open(path, method="TRACE")
    assert answer.status_code == 405
    assert answer.is_json
    assert answer.headers["Allow"]


def test_body_too_large_is_json_413(stack_env):
    app = create_app({**stack_env, "MAX_CONTENT_LENGTH": "1000"})
    try:
        answer = app.test_client().post(
            "/chat", json={"messages": [{"role": "user", "content": "x" * 2000}]}
        )
    finally:
        close_services(app)
    assert answer.status_code == 413
    assert "too large" in answer.get_json()["error"]


def test_json_array_body_is_400(client):
    answer = client.post("/save", json=[1, 2])
    assert answer.status_code == 400
    assert "JSON object" in answer.get_json()["error"]


def test_unexpected_fault_is_500_without_internals(app):
    def explode():
        raise RuntimeError("secret internal detail /srv/app.py")

    app.add_url_rule("/explode", view_func=explode)
    answer = app.test_client().get("/explode")
    assert answer.status_code == 500
    assert answer.is_json
    assert "secret" not in answer.get_data(as_text=True)
    assert "Traceback" not in answer.get_data(as_text=True)


def test_cors_allows_the_frontend_origin(client):
    answer = client.options(
        "/chat",
        headers={"Origin": FRONTEND, "Access-Control-Request-Method": "POST"},
    )
    assert answer.headers["Access-Control-Allow-Origin"] == FRONTEND


def test_cors_refuses_other_origins(client):
    answer = client.post(
        "/check_participation", json={"id": "x"}, headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in answer.headers


@pytest.mark.timeout(30)
def test_redis_down_is_503_quickly_and_save_still_works(stack_env, participant_id):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app({**stack_env, "REDIS_URL": dead})
    try:
        client = app.test_client()
        chat = client.post("/chat", json={"messages": [{"role": "user", "content": "x"}]})
        polled = client.post("/check_response", json={"jobId": str(uuid.uuid4())})
        checked = client.post("/check_participation", json={"id": participant_id})
    finally:
        close_services(app)
    assert chat.status_code == 503
    assert "Redis" in chat.get_json()["error"]
    assert polled.status_code == 503
    assert checked.status_code == 204


def test_the_study_and_its_hash_are_logged_at_start(stack_env, caplog):
    study_file = ROOT / "study.example.yaml"
    with caplog.at_level("INFO", logger="studychat.web.services"):
        app = create_app(stack_env | {"STUDY_FILE": str(study_file)})
    try:
        study = services(app).study
        assert study is not None
        assert f"study support-pilot from {study_file}, sha256 {study.hash}" in caplog.text
    finally:
        close_services(app)
