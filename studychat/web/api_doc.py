"""How a route describes itself in the OpenAPI document: `@documented(...)` above it.

GET /openapi.json (openapi.py) walks the app's routes and takes each one's operation from
its view, so a route's description sits beside the route and names the pydantic models
that validate its body and shape its answers. A route without one still appears in the
document, tagged `undescribed`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from studychat.web.response_schemas import ErrorAnswer

View = TypeVar("View", bound=Callable[..., Any])

REF = "#/components/schemas/{model}"
# The frozen contract of existing frontends; the live fuzz tests cover these operations.
CONTRACT = "contract"
OPERATION = "openapi_operation"
BAD_REQUEST = "The body is not a JSON object of the declared shape; `error` names the field."
TOO_LARGE = "The body is larger than MAX_CONTENT_LENGTH."
UNAVAILABLE = "Redis or MongoDB cannot be reached right now."
ADMIN_OFF = "The admin pages are off (no ADMIN_TOKEN is set)."
RETRY_AFTER = {
    "description": "Seconds until the rate limit admits another request.",
    "schema": {"type": "integer"},
}


def documented(operation: dict[str, Any]) -> Callable[[View], View]:
    """Give a view its OpenAPI operation (for every method of its route)."""

    def attach(view: View) -> View:
        setattr(view, OPERATION, operation)
        return view

    return attach


def operation_of(view: Callable[..., Any] | None) -> dict[str, Any] | None:
    """The operation a view was given, if any."""
    return getattr(view, OPERATION, None)


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


def post(
    summary: str, body: type[BaseModel] | dict[str, Any], answers: dict[str, Any]
) -> dict[str, Any]:
    """A contract POST operation with a JSON body and the errors every POST route answers.

    `body` is the model of the body, or a schema (to offer the legacy and session bodies).
    """
    schema = body if isinstance(body, dict) else ref(body)
    return {
        "summary": summary,
        "tags": [CONTRACT],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            **answers,
            "400": error(BAD_REQUEST),
            "413": error(TOO_LARGE),
            "503": error(UNAVAILABLE),
        },
    }
