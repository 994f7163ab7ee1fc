"""The OpenAPI 3.1 document of the whole API, served at GET /openapi.json.

It is generated from the same pydantic declarations that validate requests (schemas.py,
bounded by this deployment's limits) and from the declared answers (response_schemas.py),
so the document cannot drift from what the service checks.

Each route describes itself beside its view (`@documented`, api_doc.py); this module
walks the app's routes and collects them. A route that describes nothing still appears,
tagged UNDESCRIBED, so the document always lists every route the app serves.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from studychat.web.admin.auth import is_admin_path
from studychat.web.api_doc import CONTRACT, REF, documented, json_answer, operation_of
from studychat.web.response_schemas import (
    BudgetReport,
    ChatAnswer,
    ErrorAnswer,
    JobAccepted,
    Participated,
    Processing,
    Saved,
    SessionOpened,
)
from studychat.web.schemas import (
    STORABLE_JSON,
    ChatRequest,
    CheckParticipationRequest,
    CheckResponseRequest,
    RequestLimits,
    SaveRequest,
    SessionChatRequest,
    SessionSaveRequest,
    SessionStartRequest,
    bounded_models,
    storable_json_schema,
)
from studychat.web.services import services

bp = Blueprint("openapi", __name__)

TITLE = "Study chat proxy"
VERSION = "1.0.0"
UNDESCRIBED = "undescribed"
FLASK_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
RESPONSES = (
    ErrorAnswer,
    JobAccepted,
    Processing,
    ChatAnswer,
    Saved,
    Participated,
    BudgetReport,
    SessionOpened,
)


def component_schemas(limits: RequestLimits) -> dict[str, Any]:
    """JSON Schemas of every request body (with `limits`) and every answer body."""
    bounded = bounded_models(limits)
    requests = (
        ChatRequest,
        CheckResponseRequest,
        SaveRequest,
        CheckParticipationRequest,
        SessionStartRequest,
        SessionChatRequest,
        SessionSaveRequest,
    )
    models = [(bounded.get(model, model), "validation") for model in requests]
    models += [(model, "serialization") for model in RESPONSES]
    _, definitions = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    return {**definitions["$defs"], STORABLE_JSON: storable_json_schema()}


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/stream/<job_id>` -> `/stream/{job_id}`."""
    return FLASK_PARAMETER.sub(r"{\1}", rule)


def undescribed_operation(app: Flask, endpoint: str) -> dict[str, Any]:
    """A bare entry for a route no module describes: its summary, any answer."""
    view = app.view_functions.get(endpoint)
    summary = ((view.__doc__ or endpoint) if view else endpoint).strip().splitlines()[0]
    return {
        "summary": summary,
        "tags": [UNDESCRIBED],
        "responses": {"default": {"description": "Not described in this document yet."}},
    }


def bare_operation(app: Flask, rule: Rule) -> dict[str, Any]:
    """The entry of a route that describes nothing: its summary, its path parameters."""
    operation = undescribed_operation(app, rule.endpoint)
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in FLASK_PARAMETER.findall(rule.rule)  # in the path's order
    ]
    if parameters:
        operation["parameters"] = parameters
    return operation


def all_paths(app: Flask) -> dict[str, Any]:
    """Every route `app` serves, as its view describes it (api_doc), or bare.

    Without ADMIN_TOKEN the admin surface answers 404 to everyone, so it is left out.
    """
    paths: dict[str, Any] = {}
    admin_on = bool(services(app).settings.ADMIN_TOKEN)
    for rule in app.url_map.iter_rules():
        path = openapi_path(rule.rule)
        if rule.endpoint == "static" or (is_admin_path(path) and not admin_on):
            continue
        operation = operation_of(app.view_functions.get(rule.endpoint))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation or bare_operation(app, rule)
    return paths


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (its limits appear in it)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION},
        "paths": all_paths(app),
        "components": {
            "schemas": component_schemas(RequestLimits.from_settings(services(app).settings)),
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
@documented(
    {
        "summary": "This document.",
        "tags": [CONTRACT],
        "responses": {"200": json_answer("The OpenAPI document.", {"type": "object"})},
    }
)
def openapi_document():
    """Serve the document."""
    return jsonify(build_document(current_app))
