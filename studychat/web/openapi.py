"""The OpenAPI 3.1 document of the whole API, served at GET /openapi.json.

It is generated from the same pydantic declarations that validate requests (schemas.py,
bounded by this deployment's limits) and from the declared answers (response_schemas.py),
so the document cannot drift from what the service checks.

The frozen contract is described here. Another blueprint describes its own routes by
giving its module an `OPENAPI_PATHS` dict (path -> OpenAPI path item); a route that
nobody describes still appears, tagged UNDESCRIBED, so the document always lists every
route the app serves.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from studychat.web.admin.auth import is_admin_path
from studychat.web.response_schemas import (
    BudgetReport,
    ChatAnswer,
    ErrorAnswer,
    JobAccepted,
    Participated,
    Processing,
    Saved,
)
from studychat.web.schemas import (
    STORABLE_JSON,
    ChatRequest,
    CheckParticipationRequest,
    CheckResponseRequest,
    RequestLimits,
    SaveRequest,
    bounded_models,
    storable_json_schema,
)
from studychat.web.services import services

bp = Blueprint("openapi", __name__)

TITLE = "Study chat proxy"
VERSION = "1.0.0"
REF = "#/components/schemas/{model}"
CONTRACT = "contract"
UNDESCRIBED = "undescribed"
FLASK_PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
RESPONSES = (ErrorAnswer, JobAccepted, Processing, ChatAnswer, Saved, Participated, BudgetReport)

BAD_REQUEST = "The body is not a JSON object of the declared shape; `error` names the field."
TOO_LARGE = "The body is larger than MAX_CONTENT_LENGTH."
UNAVAILABLE = "Redis or MongoDB cannot be reached right now."
RETRY_AFTER = {
    "description": "Seconds until the rate limit admits another request.",
    "schema": {"type": "integer"},
}


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": REF.format(model=model.__name__)}


def json_answer(description: str, schema: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A response with a JSON body."""
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def error(description: str, **extra: Any) -> dict[str, Any]:
    """A response whose body is `{"error": "..."}`."""
    return json_answer(description, ref(ErrorAnswer), **extra)


def post(summary: str, body: type[BaseModel], answers: dict[str, Any]) -> dict[str, Any]:
    """A POST operation with a JSON body and the errors every POST route can answer."""
    return {
        "post": {
            "summary": summary,
            "tags": [CONTRACT],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref(body)}},
            },
            "responses": {
                **answers,
                "400": error(BAD_REQUEST),
                "413": error(TOO_LARGE),
                "503": error(UNAVAILABLE),
            },
        }
    }


def contract_paths() -> dict[str, Any]:
    """The routes described here, with every answer of their contract."""
    return {
        "/chat": post(
            "Queue one chat turn; poll POST /check_response with the jobId.",
            ChatRequest,
            {
                "202": json_answer("Queued.", ref(JobAccepted)),
                "429": error(
                    "Too many chat requests for this client (Retry-After says when to try"
                    " again), or the participant's or the study's token budget is spent.",
                    headers={"Retry-After": RETRY_AFTER},
                ),
            },
        ),
        "/check_response": post(
            "The answer of a chat turn, or that it is still being worked on.",
            CheckResponseRequest,
            {
                "200": json_answer(
                    "Still processing, or the model's completion.",
                    {"anyOf": [ref(Processing), ref(ChatAnswer)]},
                ),
                "404": error("No job with this jobId exists (or it expired)."),
                "502": error("The model call failed; `error` says how."),
            },
        ),
        "/save": post(
            "Store the participant's record once; answer the completion code.",
            SaveRequest,
            {
                "201": json_answer("Stored.", ref(Saved)),
                "304": {"description": "A record exists for this participant; it is kept."},
            },
        ),
        "/check_participation": post(
            "Whether a record exists for this participant id.",
            CheckParticipationRequest,
            {
                "302": json_answer("A record exists.", ref(Participated)),
                "204": {"description": "No record exists."},
            },
        ),
        "/admin/budget": {"get": admin_budget_operation()},
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "tags": [CONTRACT],
                "responses": {"200": json_answer("The OpenAPI document.", {"type": "object"})},
            }
        },
    }


def admin_budget_operation() -> dict[str, Any]:
    """GET /admin/budget, behind the admin bearer token."""
    return {
        "summary": "Tokens spent and in flight, for the study and optionally one participant.",
        "tags": [CONTRACT],
        "security": [{"adminToken": []}],
        "parameters": [
            {
                "name": "participantId",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        ],
        "responses": {
            "200": json_answer("The spending report.", ref(BudgetReport)),
            "400": error("The participantId parameter is empty or too long."),
            "401": error("The Authorization header does not carry the admin token."),
            "404": error("The admin pages are off (no ADMIN_TOKEN is set)."),
            "414": {
                "description": "The query is longer than the HTTP server takes (gunicorn:"
                " 4094 bytes in the request line); it answers this itself, not in JSON.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "503": error(UNAVAILABLE),
        },
    }


def component_schemas(limits: RequestLimits) -> dict[str, Any]:
    """JSON Schemas of every request body (with `limits`) and every answer body."""
    bounded = bounded_models(limits)
    requests = (ChatRequest, CheckResponseRequest, SaveRequest, CheckParticipationRequest)
    models = [(bounded.get(model, model), "validation") for model in requests]
    models += [(model, "serialization") for model in RESPONSES]
    _, definitions = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    return {**definitions["$defs"], STORABLE_JSON: storable_json_schema()}


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: `/stream/<job_id>` -> `/stream/{job_id}`."""
    return FLASK_PARAMETER.sub(r"{\1}", rule)


def contributed_paths(app: Flask) -> dict[str, Any]:
    """The OPENAPI_PATHS of every registered blueprint's module."""
    found: dict[str, Any] = {}
    for blueprint in app.blueprints.values():
        module = importlib.import_module(blueprint.import_name)
        found.update(getattr(module, "OPENAPI_PATHS", None) or {})
    return found


def undescribed_operation(app: Flask, endpoint: str) -> dict[str, Any]:
    """A bare entry for a route no module describes: its summary, any answer."""
    view = app.view_functions.get(endpoint)
    summary = ((view.__doc__ or endpoint) if view else endpoint).strip().splitlines()[0]
    return {
        "summary": summary,
        "tags": [UNDESCRIBED],
        "responses": {"default": {"description": "Not described in this document yet."}},
    }


def undescribed_paths(app: Flask, described: Mapping[str, Any]) -> dict[str, Any]:
    """Entries for every route of `app` that `described` leaves out."""
    found: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        path = openapi_path(rule.rule)
        if rule.endpoint == "static" or path in described:
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        operation = undescribed_operation(app, rule.endpoint)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in rule.arguments
        ]
        if parameters:
            operation["parameters"] = parameters
        for method in methods:
            found.setdefault(path, {})[method.lower()] = operation
    return found


def all_paths(app: Flask) -> dict[str, Any]:
    """Every route `app` serves: described ones in full, the others bare.

    Without ADMIN_TOKEN the admin surface answers 404 to everyone, so it is left out.
    """
    described = {**contract_paths(), **contributed_paths(app)}
    paths = {**described, **undescribed_paths(app, described)}
    if services(app).settings.ADMIN_TOKEN:
        return paths
    return {path: item for path, item in paths.items() if not is_admin_path(path)}


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
def openapi_document():
    """Serve the document."""
    return jsonify(build_document(current_app))
