"""GET /openapi.json, and schemathesis checking the live app (gunicorn + worker) against it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Blueprint, Flask, jsonify
from hypothesis import HealthCheck, given, settings
from redis import Redis
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devtools.servers import WebServer
from studychat.chat.task_queue import make_queue
from studychat.factory import create_app
from studychat.web.openapi import CONTRACT, UNDESCRIBED, openapi_path
from studychat.web.services import close_services
from tests.support.polling import wait_for
from tests.support.stack import process_env

ADMIN_TOKEN = "admin-token-for-schemathesis-0123"
# The legacy codes, and those a study session adds (401, 404, 409, 410; /sessions).
CONTRACT_CODES = {
    ("post", "/chat"): {"202", "400", "401", "404", "409", "410", "413", "429", "503"},
    ("post", "/check_response"): {"200", "400", "404", "413", "502", "503"},
    ("post", "/save"): {"201", "304", "400", "401", "404", "410", "413", "503"},
    ("post", "/sessions"): {"200", "201", "400", "404", "409", "413", "429", "503"},
    ("post", "/check_participation"): {"302", "204", "400", "413", "503"},
    ("get", "/admin/budget"): {"200", "400", "401", "404", "414", "503"},
    ("get", "/openapi.json"): {"200"},
}
# Invalid input must be refused with one of these (414: a query too long for gunicorn).
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 413, 414, 429]}}}
)
# Examples per operation: enough to reach every branch of the validation, and the whole
# run stays within seconds on 2 cores.
MAX_EXAMPLES = 40


@pytest.fixture()
def admin_app(stack_env) -> Iterator[Flask]:
    """The app with its admin surface on."""
    made = create_app(stack_env | {"ADMIN_TOKEN": ADMIN_TOKEN})
    yield made
    close_services(made)


@pytest.fixture()
def document(admin_app) -> dict:
    answer = admin_app.test_client().get("/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()


def test_document_is_openapi_3_1_with_every_contract_answer(document):
    assert document["openapi"] == "3.1.0"
    for (method, path), codes in CONTRACT_CODES.items():
        operation = document["paths"][path][method]
        assert set(operation["responses"]) == codes, path
        assert operation["tags"] == [CONTRACT]


def test_document_states_the_deployment_limits(stack_env):
    limits = {"MAX_MESSAGES": "9", "MAX_MESSAGE_CHARS": "99", "MAX_IMAGE_BYTES": "3000"}
    app = create_app(stack_env | limits)
    try:
        schemas = app.test_client().get("/openapi.json").get_json()["components"]["schemas"]
    finally:
        close_services(app)
    assert schemas["ChatRequest"]["properties"]["messages"]["maxItems"] == 9
    message = schemas["ChatMessage"]["properties"]
    assert message["content"]["maxLength"] == 99
    assert message["role"]["enum"] == ["system", "user", "assistant"]
    job_id = schemas["CheckResponseRequest"]["properties"]["jobId"]
    assert job_id["pattern"].startswith("^[0-9a-f]{8}-")


def test_request_schemas_come_from_the_validating_models(document):
    schemas = document["components"]["schemas"]
    assert schemas["SaveRequest"]["required"] == ["participantId", "messages", "tasks", "condition"]
    assert schemas["CheckParticipationRequest"]["properties"]["id"]["maxLength"] == 200
    answer = document["paths"]["/chat"]["post"]["responses"]["202"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobAccepted"
    }


def test_every_route_of_the_app_is_in_the_document(admin_app):
    extra = Blueprint("extra_for_test", __name__)
    extra.add_url_rule("/extra/<job_id>", view_func=lambda job_id: jsonify(job_id=job_id))
    admin_app.register_blueprint(extra)
    document = admin_app.test_client().get("/openapi.json").get_json()
    for rule in admin_app.url_map.iter_rules():
        if rule.endpoint != "static":
            assert openapi_path(rule.rule) in document["paths"], rule.rule
    undescribed = document["paths"]["/extra/{job_id}"]["get"]
    assert undescribed["tags"] == [UNDESCRIBED]
    assert undescribed["parameters"][0]["name"] == "job_id"


def test_without_an_admin_token_the_document_leaves_the_admin_surface_out(client):
    # It answers 404 to everyone then, so no client should be told it exists.
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith("/admin")]
    assert "/chat" in paths and "/metrics" in paths


@pytest.fixture(scope="module")
def live_url(stack_env, worker, tmp_path_factory) -> Iterator[str]:
    """The app under gunicorn (2 processes), with the real worker answering its chats."""
    env = process_env(stack_env | {"ADMIN_TOKEN": ADMIN_TOKEN})
    with WebServer(env, directory=tmp_path_factory.mktemp("schemathesis-web")) as web:
        yield web.url
    # Leave no generated chat queued or in flight for the tests that follow.
    connection = Redis.from_url(stack_env["REDIS_URL"])
    queue = make_queue(connection)
    wait_for(lambda: queue.count == 0 and queue.started_job_registry.count == 0, timeout=60)
    connection.close()


@pytest.fixture(scope="module")
def live_schema(live_url):
    """The document as the live app serves it, limited to the routes it describes in full."""
    loaded = schemathesis.openapi.from_url(live_url + "/openapi.json", config=CONFIG)
    return loaded.include(tag=CONTRACT)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


# Every operation with valid and with invalid input (GET /openapi.json takes no input).
RUNS = [
    (method, path, mode)
    for method, path in sorted(CONTRACT_CODES)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if path != "/openapi.json" or mode is GenerationMode.POSITIVE
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("method", "path", "mode"), RUNS)
def test_live_api_matches_its_document(live_schema, method, path, mode):
    """No 5xx, and every answer (code, type, body, headers) is one the document declares."""
    operation = live_schema[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        # The same examples on every run; `make fuzz` explores new ones.
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case) -> None:
        case.call_and_validate(checks=CHECKS)

    answers_as_documented()


# Examples per operation in the command-line run below: both runs fit in about 8 minutes
# on 2 cores. A fixed seed keeps the run repeatable; `make fuzz` runs with a new one.
CLI_EXAMPLES = 30
CLI_SEED = 7
CLI_CONFIG = Path(__file__).resolve().parents[1] / "support" / "schemathesis.toml"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("admin_token", [ADMIN_TOKEN, None], ids=["admin-token", "defaults"])
def test_schemathesis_command_line_finds_no_failure(stack_env, worker, tmp_path, admin_token):
    """`st run --checks all` on the live service, as an outsider runs it, finds nothing."""
    settings = stack_env | ({"ADMIN_TOKEN": admin_token} if admin_token else {})
    with WebServer(process_env(settings), directory=tmp_path) as web:
        st = str(Path(sys.executable).parent / "st")
        argv = [st, "--config-file", str(CLI_CONFIG), "run", web.url + "/openapi.json"]
        argv += ["--checks", "all", "-n", str(CLI_EXAMPLES), "--seed", str(CLI_SEED)]
        # Generating the recursive free-form JSON of /save is slow on a busy machine:
        # that is the generator's speed, not an answer of the service.
        argv += ["--suppress-health-check", "too_slow"]
        if admin_token:
            argv += ["-H", f"Authorization: Bearer {admin_token}"]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=800, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-20000:]
    # Every generated case passed every check (none skipped for a failure).
    assert re.search(r"(\d+) generated, \1 passed", run.stdout), run.stdout[-3000:]
