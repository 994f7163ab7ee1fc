"""Declared request bodies of every route, and the one function that parses them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from exceptions import BadRequest

Model = TypeVar("Model", bound=BaseModel)

NonEmptyId = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are ignored, never forwarded."""

    model_config = ConfigDict(extra="ignore")


class ChatMessage(RequestBody):
    """One message of the conversation as the frontend sends it."""

    role: Literal["system", "user", "assistant"]
    content: StrictStr
    image: StrictStr | None = None


class ChatRequest(RequestBody):
    """POST /chat."""

    messages: list[ChatMessage] = Field(min_length=1)
    participantId: NonEmptyId | None = None


class CheckResponseRequest(RequestBody):
    """POST /check_response."""

    jobId: NonEmptyId


class SaveRequest(RequestBody):
    """POST /save."""

    participantId: NonEmptyId
    messages: list[Any]
    tasks: dict[str, Any]
    condition: Any = Field(json_schema_extra={"description": "any JSON value"})


class CheckParticipationRequest(RequestBody):
    """POST /check_participation."""

    id: NonEmptyId


def parse_body(model: type[Model]) -> Model:
    """Parse the JSON request body into `model`, or raise BadRequest naming the field."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object (Content-Type: application/json).")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise BadRequest(describe_error(error)) from None


def describe_error(error: ValidationError) -> str:
    """The first validation problem as a sentence naming the field."""
    first = error.errors(include_url=False, include_input=False)[0]
    field = _field_path(first["loc"])
    if first["type"] == "missing":
        return f"Field '{field}' is required."
    return f"Field '{field}' is invalid: {first['msg']}."


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
