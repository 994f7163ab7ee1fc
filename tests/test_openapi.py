"""GET /openapi.json, and schemathesis checking the live app (gunicorn + worker) against it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from flask import Blueprint, jsonify
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

from app import create_app
from devtools.servers import WebServer
from openapi import CONTRACT, UNDESCRIBED, openapi_path
from services import close_services
from task_queue import make_queue
from tests.conftest import process_env
from tests.polling import wait_for

ADMIN_TOKEN = "admin-token-for-schemathesis-0123"
CONTRACT_CODES = {
    ("post", "/chat"): {"202", "400", "413", "429", "503"},
    ("post", "/check_response"): {"200", "400", "404", "413", "502", "503"},
    ("post", "/save"): {"201", "304", "400", "413", "503"},
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
def document(client) -> dict:
    answer = client.get("/openapi.json")
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


def test_every_route_of_the_app_is_in_the_document(app):
    extra = Blueprint("extra_for_test", __name__)
    extra.add_url_rule("/extra/<job_id>", view_func=lambda job_id: jsonify(job_id=job_id))
    app.register_blueprint(extra)
    document = app.test_client().get("/openapi.json").get_json()
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static":
            assert openapi_path(rule.rule) in document["paths"], rule.rule
    undescribed = document["paths"]["/extra/{job_id}"]["get"]
    assert undescribed["tags"] == [UNDESCRIBED]
    assert undescribed["parameters"][0]["name"] == "job_id"


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
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case) -> None:
        case.call_and_validate(checks=CHECKS)

    answers_as_documented()
