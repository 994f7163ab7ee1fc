"""Declared request bodies of every route, and the one function that parses them.

Each route's body is declared once here. The limits a deployment sets (MAX_MESSAGES,
MAX_MESSAGE_CHARS, MAX_TOTAL_CHARS, MAX_IMAGE_BYTES) are written into bounded copies of
these declarations (`bounded_models`), so validation and the OpenAPI document
(openapi.py) state the same numbers. The two checks JSON Schema cannot express (all
contents together, the decoded size of an image) read the same limits from the
validation context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from flask import request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from studychat.exceptions import BadRequest
from studychat.settings import Settings
from studychat.web.services import services

Model = TypeVar("Model", bound=BaseModel)

# RQ names a job `str(uuid4())` (rq.job.Job.id); /check_response accepts nothing else.
JOB_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
IMAGE_TYPES = ("png", "jpeg", "gif", "webp")
IMAGE_PREFIX_PATTERN = r"^data:image/(png|jpeg|gif|webp);base64,"
# The leading bytes of a PNG, JPEG, GIF or WebP file as they start its base64, in whole
# base64 quanta: \x89PNG\r\n\x1a\n, \xff\xd8\xff, GIF87a or GIF89a, RIFF....WEBP.
IMAGE_SIGNATURE_PATTERN = (
    r"(?:iVBORw0KGg[o-r][A-Za-z0-9+/]|/9j/|R0lGOD[dl]h"
    r"|UklGR[g-v][A-Za-z0-9+/]{4}[BFJNRVZdhlptx159]XRUJQ)"
)
# A known image in whole base64 quanta only, so that a matching string always decodes:
# the document states all that the server checks of an image but its decoded size.
IMAGE_PATTERN = (
    IMAGE_PREFIX_PATTERN
    + IMAGE_SIGNATURE_PATTERN
    + r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)
LONGEST_IMAGE_PREFIX = len("data:image/jpeg;base64,")
# Free-form JSON stored in MongoDB (/save) may nest this deep; BSON itself stops at 100.
MAX_JSON_DEPTH = 32
# The integers BSON can store.
INT64 = range(-(2**63), 2**63)

# Longest long poll of /check_response: below the 30 s after which routers (Heroku) cut.
MAX_WAIT_S = 25

# The longest id a client may send (participantId, a query's participantId), everywhere.
MAX_ID_CHARS = 200
NonEmptyId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
JobId = Annotated[StrictStr, Field(pattern=JOB_ID_PATTERN)]


@dataclass(frozen=True)
class RequestLimits:
    """The deployment's bounds on a chat request (settings MAX_*)."""

    max_messages: int
    max_message_chars: int
    max_total_chars: int
    max_image_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        """The limits named in `settings`."""
        return cls(
            max_messages=settings.MAX_MESSAGES,
            max_message_chars=settings.MAX_MESSAGE_CHARS,
            max_total_chars=settings.MAX_TOTAL_CHARS,
            max_image_bytes=settings.MAX_IMAGE_BYTES,
        )


def storable_json(value: Any, where: str = "", depth: int = 0) -> Any:
    """`value` itself, once it is known that MongoDB stores it as it is; else the problem.

    Keys with `.` and `$` are kept: an insert is not a query, and MongoDB (5.0 and later)
    stores them as they are. Refused is only what BSON cannot hold: NUL in a key, invalid
    Unicode, integers beyond 64 bits, nesting beyond MAX_JSON_DEPTH.
    """
    if depth > MAX_JSON_DEPTH:
        raise PydanticCustomError(
            "too_deep", "it nests deeper than {limit} levels", {"limit": MAX_JSON_DEPTH}
        )
    if isinstance(value, list):
        for i, item in enumerate(value):
            storable_json(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_key(key, where)
            storable_json(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, str) and not is_unicode(value):
        raise PydanticCustomError("not_unicode", "text in it{at} is not valid Unicode", _at(where))
    elif is_number(value) and not INT64.start <= value <= INT64.stop - 1:
        # BSON stores integers in 64 bits. JSON Schema cannot tell 2e30 from 2 * 10**30,
        # so the document states one range for every number, and it is enforced as stated.
        raise PydanticCustomError(
            "too_big", "a number in it{at} does not fit in 64 bits", _at(where)
        )
    return value


def is_number(value: Any) -> bool:
    """Whether `value` is a JSON number (a bool is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_unicode(text: str) -> bool:
    """Whether `text` encodes as UTF-8 (JSON escapes can smuggle in lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _at(where: str) -> dict[str, str]:
    return {"at": f" (at {where.lstrip('.')})" if where else ""}


def check_key(key: str, where: str) -> None:
    """Refuse a key BSON cannot hold: one with NUL or invalid Unicode."""
    if "\x00" in key or not is_unicode(key):
        raise PydanticCustomError(
            "bad_key", "a key in it{at} holds a NUL character or invalid Unicode", _at(where)
        )


STORABLE_JSON = "StorableJson"
STORABLE_JSON_REF: dict[str, Any] = {"$ref": f"#/components/schemas/{STORABLE_JSON}"}
# Text with no lone surrogate (a JSON escape can smuggle one in; BSON stores UTF-8 only),
# and keys with no NUL either. Written as escapes both Python's re and Rust's regex read
# (tools built on jsonschema-rs refuse a pattern holding a surrogate itself).
UNICODE_TEXT = r"^[\u0000-\uD7FF\uE000-\U0010FFFF]*$"
KEY_TEXT = r"^[\u0001-\uD7FF\uE000-\U0010FFFF]*$"
STORABLE_OBJECT = {
    "type": "object",
    "propertyNames": {"pattern": KEY_TEXT},
    "additionalProperties": STORABLE_JSON_REF,
}
STORABLE_ARRAY = {"type": "array", "items": STORABLE_JSON_REF}


def storable_json_schema() -> dict[str, Any]:
    """JSON Schema of what storable_json accepts, but for its nesting limit."""
    return {
        "description": f"Any JSON MongoDB can store, nested at most {MAX_JSON_DEPTH} deep.",
        "anyOf": [
            {"type": "string", "pattern": UNICODE_TEXT},
            # JSON Schema cannot tell 2.0 from 2, so one bound serves every number.
            {"type": "number", "minimum": INT64.start, "maximum": INT64.stop - 1},
            {"type": "boolean"},
            {"type": "null"},
            STORABLE_ARRAY,
            STORABLE_OBJECT,
        ],
    }


# allOf: pydantic would try to resolve a bare $ref among its own definitions.
StorableJson = Annotated[
    Any, AfterValidator(storable_json), WithJsonSchema({"allOf": [STORABLE_JSON_REF]})
]


def image_bytes(data_url: str) -> int:
    """Decoded size of a base64 data URL that matches IMAGE_PATTERN."""
    payload = data_url.partition(",")[2]
    return len(payload) * 3 // 4 - payload.count("=", len(payload) - 2)


def is_data_url(image: str) -> bool:
    """Whether `image` matches IMAGE_PATTERN (pydantic's regex engine: linear, fast on MBs)."""
    try:
        _DATA_URL.validate_python(image)
    except ValidationError:
        return False
    return True


_DATA_URL = TypeAdapter(Annotated[str, Field(pattern=IMAGE_PATTERN)])


def image_field(max_bytes: int | None = None) -> Any:
    """The type of `image`: a base64 data URL, at most `max_bytes` once decoded."""
    extra: dict[str, Any] = {"pattern": IMAGE_PATTERN}
    if max_bytes is not None:
        extra["maxLength"] = LONGEST_IMAGE_PREFIX + 4 * math.ceil(max_bytes / 3)
    description = "An image as a base64 data URL of image/" + ", image/".join(IMAGE_TYPES)
    return Annotated[StrictStr, Field(description=description + ".", json_schema_extra=extra)]


ImageDataUrl = image_field()
IMAGE_FORM = (
    "it must be a base64 data URL (data:image/png;base64,...) of a PNG, JPEG, GIF or WebP"
    " image; links to images are not accepted"
)


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are ignored, never forwarded."""

    model_config = ConfigDict(extra="ignore")


class ChatMessage(RequestBody):
    """One message of the conversation as the frontend sends it."""

    # The document says what check_image enforces: an image on a user message only.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"role": {"const": "user"}}},
                {"properties": {"image": {"type": "null"}}},
            ]
        }
    )

    role: Literal["system", "user", "assistant"]
    content: StrictStr
    image: ImageDataUrl | None = None  # type: ignore[valid-type]

    @field_validator("image")
    @classmethod
    def check_image(cls, image: str | None, info: ValidationInfo) -> str | None:
        """Only user messages carry images, and only inline ones of a known type and size."""
        if image is None:
            return None
        if info.data.get("role") != "user":
            raise PydanticCustomError("image_role", "only a user message may carry an image")
        return checked_image(image, info)


def checked_image(image: str, info: ValidationInfo) -> str:
    """`image` if it is an inline image of a known type within MAX_IMAGE_BYTES."""
    if not is_data_url(image):
        raise PydanticCustomError("image_form", IMAGE_FORM)
    limits = info.context
    if isinstance(limits, RequestLimits) and image_bytes(image) > limits.max_image_bytes:
        raise PydanticCustomError(
            "image_size", "the image exceeds {limit} bytes", {"limit": limits.max_image_bytes}
        )
    return image


class ChatRequest(RequestBody):
    """POST /chat."""

    messages: list[ChatMessage] = Field(min_length=1)
    participantId: NonEmptyId | None = None
    stream: StrictBool = Field(
        default=False,
        description="Stream the answer from the model, to read it at GET /stream/{jobId}.",
    )

    @field_validator("messages")
    @classmethod
    def check_total_length(cls, messages: list[ChatMessage], info: ValidationInfo):
        """All contents together stay within MAX_TOTAL_CHARS."""
        limits = info.context
        total = sum(len(message.content) for message in messages)
        if isinstance(limits, RequestLimits) and total > limits.max_total_chars:
            raise PydanticCustomError(
                "total_too_long",
                "the messages hold {total} characters together; at most {limit} are allowed",
                {"total": total, "limit": limits.max_total_chars},
            )
        return messages


SessionToken = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MAX_ID_CHARS, description="The token POST /sessions issued."),
]


class SessionStartRequest(RequestBody):
    """POST /sessions: Prolific's ids, as a study link passes them in its URL."""

    participantId: NonEmptyId = Field(description="Prolific's PROLIFIC_PID.")
    studyId: NonEmptyId | None = Field(default=None, description="Prolific's STUDY_ID.")
    sessionId: NonEmptyId | None = Field(default=None, description="Prolific's SESSION_ID.")


class SessionMessage(RequestBody):
    """The participant's new message; the server holds everything said before."""

    content: StrictStr
    image: ImageDataUrl | None = None  # type: ignore[valid-type]

    @field_validator("image")
    @classmethod
    def check_image(cls, image: str | None, info: ValidationInfo) -> str | None:
        """Only inline images of a known type and size."""
        return checked_image(image, info) if image is not None else None


class SessionChatRequest(RequestBody):
    """POST /chat in a study session: only the new message."""

    sessionToken: SessionToken
    message: SessionMessage
    stream: StrictBool = Field(
        default=False,
        description="Stream the answer from the model, to read it at GET /stream/{jobId}.",
    )


# Fields of a session's record the server writes; a client may not send them.
SERVER_SET_FIELDS = frozenset(
    {"_id", "participantId", "study", "studyHash", "condition", "prolific", "messages", "savedAt"}
)


class SessionSaveRequest(RequestBody):
    """POST /save in a study session: `tasks` and any other fields, stored as sent."""

    model_config = ConfigDict(
        extra="allow", json_schema_extra={"additionalProperties": STORABLE_JSON_REF}
    )

    sessionToken: SessionToken
    tasks: Annotated[
        dict[str, Any], AfterValidator(storable_json), WithJsonSchema(STORABLE_OBJECT)
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def check_other_fields(self) -> SessionSaveRequest:
        """Other fields are stored as sent, unless the server sets that field itself."""
        for name, value in (self.model_extra or {}).items():
            if name in SERVER_SET_FIELDS:
                raise PydanticCustomError(
                    "server_set", "field {name} is set by the server", {"name": name}
                )
            self.model_extra[name] = storable_json(value, name)  # type: ignore[index]
        return self

    def other_fields(self) -> dict[str, Any]:
        """The fields beyond sessionToken and tasks, as sent."""
        return dict(self.model_extra or {})


class CheckResponseRequest(RequestBody):
    """POST /check_response."""

    jobId: JobId = Field(description="The jobId POST /chat answered.")
    wait: StrictFloat = Field(
        default=0,
        ge=0,
        le=MAX_WAIT_S,
        allow_inf_nan=False,
        description="Seconds to hold the request open until the answer is ready (long poll).",
    )


class SaveRequest(RequestBody):
    """POST /save."""

    participantId: NonEmptyId
    messages: Annotated[list[Any], AfterValidator(storable_json), WithJsonSchema(STORABLE_ARRAY)]
    tasks: Annotated[dict[str, Any], AfterValidator(storable_json), WithJsonSchema(STORABLE_OBJECT)]
    condition: StorableJson


class CheckParticipationRequest(RequestBody):
    """POST /check_participation."""

    id: NonEmptyId


@cache
def bounded_models(limits: RequestLimits) -> dict[type[BaseModel], type[BaseModel]]:
    """Copies of the declarations that carry `limits`, by the declaration they bound."""
    bounded_content = {
        "content": (Annotated[StrictStr, Field(max_length=limits.max_message_chars)], ...),
        "image": (image_field(limits.max_image_bytes) | None, None),
    }
    message = _bounded_copy(ChatMessage, **bounded_content)
    session_message = _bounded_copy(SessionMessage, **bounded_content)
    max_messages = Field(min_length=1, max_length=limits.max_messages)
    return {
        ChatMessage: message,
        ChatRequest: _bounded_copy(ChatRequest, messages=(list[message], max_messages)),  # type: ignore[valid-type]
        SessionMessage: session_message,
        SessionChatRequest: _bounded_copy(SessionChatRequest, message=(session_message, ...)),
    }


def _bounded_copy(model: type[BaseModel], **fields: Any) -> type[BaseModel]:
    """`model` under its own name, with `fields` redeclared."""
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, **fields)


def current_limits() -> RequestLimits:
    """The limits of the app serving this request."""
    return RequestLimits.from_settings(services().settings)


def parse_body(model: type[Model]) -> Model:
    """Parse the JSON request body into `model`, or raise BadRequest naming the field."""
    limits = current_limits()
    bounded = bounded_models(limits).get(model, model)
    body = json_body()
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object (Content-Type: application/json).")
    try:
        return bounded.model_validate(body, context=limits)  # type: ignore[return-value]
    except ValidationError as error:
        raise BadRequest(describe_error(error)) from None


def json_body() -> Any:
    """The parsed JSON body, None when it is not JSON; BadRequest when absurdly nested."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        raise BadRequest("The request body is nested too deeply.") from None


def describe_error(error: ValidationError) -> str:
    """The first validation problem as a sentence naming the field."""
    first = error.errors(include_url=False, include_input=False)[0]
    field = _field_path(first["loc"])
    if not field:
        return f"The body is invalid: {first['msg']}."
    if first["type"] == "missing":
        return f"Field '{field}' is required."
    return f"Field '{field}' is invalid: {first['msg']}."


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
