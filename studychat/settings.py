"""Every setting of the service, named once, with its default and meaning: `Settings`.

Settings come from the environment (and `.env`, which production processes load first,
never overriding the environment), are validated once at start and read as attributes
(`settings.REDIS_URL`): the web keeps its object in `app.extensions`, the worker passes
its own to the jobs. `.env.example` documents each field (a test keeps the two in step).
A production process refuses to start while a required setting is missing and names all
the missing ones at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import load_dotenv
from limits import parse_many
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from studychat.exceptions import MissingSettings, SettingError

# An admin token shorter than this could be guessed; `openssl rand -hex 32` makes a good one.
MIN_ADMIN_TOKEN_LENGTH = 24
PROLIFIC_COMPLETION = "https://app.prolific.com/submissions/complete?cc={code}"
# What a field's json_schema_extra says of it.
REQUIRED = {"required_in_production": True}
SECRET = {"secret": True}


def doc(text: str, **extra: Any) -> Any:
    """A field's meaning (shown in .env.example) and whether it is required or secret."""
    # A secret never shows in a repr, so never in a log line or a traceback either.
    return Field(description=text, json_schema_extra=extra or None, repr="secret" not in extra)


class ProcessSettings(BaseSettings):
    """The settings a process needs before the service's own: gunicorn's and logging's."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    PORT: Annotated[int, doc("Port the web process listens on.")] = 5000
    WEB_CONCURRENCY: Annotated[
        int, doc("Web processes (gunicorn workers); Heroku sets it by dyno size.")
    ] = 2
    WEB_CONNECTIONS: Annotated[
        int, doc("Open connections (polls, streams) one web process may hold at once.")
    ] = 1000
    LOG_LEVEL: Annotated[str, doc("Logging level of web and worker.")] = "INFO"
    LOG_PENDING_POLLS: Annotated[
        bool, doc("Write an access line for each poll answered 'still processing' too.")
    ] = False


class Settings(ProcessSettings):
    """Every setting of the service."""

    OPENAI_API_KEY: Annotated[str, doc("API key of the model service.", **REQUIRED, **SECRET)]
    OPENAI_BASE_URL: Annotated[
        str, doc("Base URL of any OpenAI-compatible server (Azure, vLLM, Ollama); empty: OpenAI.")
    ] = ""
    GPT_VERSION: Annotated[str, doc("Model every chat turn uses, e.g. gpt-4o-mini.", **REQUIRED)]
    GPT_TOKEN_LIMIT: Annotated[int, doc("Cap on output tokens per answer.")] = 1000
    FRONTEND_URL: Annotated[
        list[str],
        NoDecode,
        doc(
            "Origins allowed by CORS, comma-separated, e.g. https://study.example.org.", **REQUIRED
        ),
    ]
    DATABASE_URL: Annotated[str, doc("MongoDB connection string.", **REQUIRED, **SECRET)]
    DATABASE_NAME: Annotated[str, doc("MongoDB database that holds the collections.")] = "study"
    REDIS_URL: Annotated[
        str, doc("Redis connection string (queue, results).", **REQUIRED, **SECRET)
    ]
    REDIS_SSL_CERT_REQS: Annotated[
        Literal["required", "optional", "none"],
        doc(
            "Check of the Redis server's TLS certificate on rediss:// URLs: required, optional"
            " or none (Heroku Redis presents a self-signed one)."
        ),
    ] = "required"
    PROLIFIC_CODE: Annotated[str, doc("Completion code handed to participants.", **REQUIRED)]
    PROLIFIC_URL: Annotated[
        str, doc("Completion URL; empty: Prolific's standard URL with PROLIFIC_CODE.")
    ] = ""
    MAX_CONTENT_LENGTH: Annotated[
        int, doc("Largest request body in bytes (images travel inline as data URLs).")
    ] = 8 * 1024 * 1024
    MAX_MESSAGES: Annotated[
        int, doc("Most messages one POST /chat may carry (the whole conversation so far).")
    ] = 100
    MAX_MESSAGE_CHARS: Annotated[int, doc("Most characters in one message's content.")] = 20000
    MAX_TOTAL_CHARS: Annotated[
        int, doc("Most characters in all message contents of one POST /chat together.")
    ] = 100000
    MAX_IMAGE_BYTES: Annotated[
        int, doc("Largest image (decoded bytes) a message may carry as a base64 data URL.")
    ] = 5 * 1024 * 1024
    CHAT_RATE_LIMIT: Annotated[
        str,
        doc(
            "Chat turns one session (legacy API: one participantId) may start, e.g."
            " `20/minute`; empty: no limit."
        ),
    ] = "20/minute"
    # 600: a lab of 60 behind one address chatting 4 turns a minute, with its 60 sessions,
    # stays below half of it (docs/security.md weighs this against one abusive address).
    CHAT_RATE_LIMIT_PER_IP: Annotated[
        str,
        doc(
            "Ceiling per client address on POST /chat and POST /sessions together, whatever"
            " ids they carry, e.g. `600/minute`; empty: no ceiling."
        ),
    ] = "600/minute"
    LEGACY_API: Annotated[
        bool,
        doc(
            "Accept the legacy /chat and /save bodies (the browser sends the conversation);"
            " false: answer them 410 and accept sessions only."
        ),
    ] = True
    STUDY_FILE: Annotated[
        str,
        doc(
            "Path of the study file (YAML: conditions, prompts, models; docs/study-file.md);"
            " empty: no study, POST /sessions answers 404."
        ),
    ] = ""
    SESSION_TTL_S: Annotated[
        int, doc("Seconds a participant's session token stays valid after it is issued.")
    ] = 86400
    PROXY_FIX_X_FOR: Annotated[
        int, doc("Proxies in front of the app that append to X-Forwarded-For (Heroku: 1; none: 0).")
    ] = 1
    PARTICIPANT_TOKEN_BUDGET: Annotated[
        int | None, doc("Most model tokens one participantId may spend; empty: no cap.")
    ] = None
    STUDY_TOKEN_BUDGET: Annotated[
        int | None,
        doc(
            "Most model tokens all participants together may spend, or `none` to run"
            " uncapped: the key is the team's money, so running uncapped must be said.",
            **REQUIRED,
        ),
    ]
    ADMIN_TOKEN: Annotated[
        str,
        doc(
            "Bearer token of the /admin pages (24+ characters); empty: /admin is off (404).",
            **SECRET,
        ),
    ] = ""
    DEMO_PAGE: Annotated[
        bool, doc("Serve the demo participant page at / (true/false); `make run` turns it on.")
    ] = False
    RESULT_TTL_S: Annotated[int, doc("Seconds an answer stays readable.")] = 86400
    LLM_TIMEOUT_S: Annotated[float, doc("Seconds one upstream call may take.")] = 60.0
    LLM_MAX_RETRIES: Annotated[int, doc("Retries of a failed upstream call.")] = 4
    # 512: room for 512 participants waiting on an answer at once (make bench's 500 spread
    # keep ~460 in flight); a waiting call costs a thread and ~0.1 MB (450 in flight: worker
    # 156 MB; its long poll of 1,000 runs with 1024 and ~900 in flight).
    WORKER_CONCURRENCY: Annotated[
        int,
        doc(
            "Jobs one worker process runs at once, a thread each (model calls are I/O-bound);"
            " a worker answers at most this many / the model's latency a second."
        ),
    ] = 512
    # 50: against seconds of model latency, a wait a participant does not notice, in which
    # at N = 100 two jobs more arrive to share a take (docs/benchmark.md).
    WORKER_TAKE_WINDOW_MS: Annotated[
        int,
        doc(
            "Longest wait, in ms, of a worker woken by a job on an empty queue for about two"
            " more to take with it, while jobs come at least one per window (fewer round"
            " trips); 0: never."
        ),
        Field(ge=0, le=1000),
    ] = 50
    WORKER_SHUTDOWN_GRACE_S: Annotated[
        float,
        doc("Seconds a stopping worker lets jobs finish before handing them back to the queue."),
    ] = 20.0
    WORKER_HEARTBEAT_S: Annotated[
        int, doc("Seconds between heartbeats of running jobs; a job silent for 3 of them is rerun.")
    ] = 5
    REDIS_MAX_CONNECTIONS: Annotated[
        int,
        doc("Redis connections one process may open (hosted plans cap clients; requests wait)."),
    ] = 50

    @field_validator("FRONTEND_URL", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("PARTICIPANT_TOKEN_BUDGET", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("STUDY_TOKEN_BUDGET", mode="before")
    @classmethod
    def _none_is_uncapped(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() == "none" else value

    @field_validator("DEMO_PAGE", "LEGACY_API", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[str(info.field_name)].default
        return value

    @field_validator("REDIS_SSL_CERT_REQS", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("CHAT_RATE_LIMIT", "CHAT_RATE_LIMIT_PER_IP")
    @classmethod
    def _a_rate_limit(cls, value: str) -> str:
        """A flask-limiter limit string such as `20/minute` (empty: no limit)."""
        if value.strip():
            parse_many(value)  # raises ValueError, reported as an invalid setting
        return value.strip()

    @field_validator("ADMIN_TOKEN")
    @classmethod
    def _a_long_token(cls, value: str) -> str:
        """Short, guessable admin tokens are refused."""
        token = value.strip()
        if token and len(token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError("admin token too short")
        return token

    @property
    def completion_url(self) -> str:
        """The completion URL participants are sent to."""
        return self.PROLIFIC_URL or PROLIFIC_COMPLETION.format(code=self.PROLIFIC_CODE)


@dataclass(frozen=True)
class Setting:
    """One setting as .env.example and the deploy files state it (derived from Settings)."""

    name: str
    doc: str
    default: str
    required: bool
    secret: bool


def _as_env_text(value: Any) -> str:
    """A default as it is written in an environment file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(name: str) -> Setting:
    field = Settings.model_fields[name]
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return Setting(
        name=name,
        doc=field.description or "",
        default="" if field.is_required() else _as_env_text(field.default),
        required=bool(extra.get("required_in_production")),
        secret=bool(extra.get("secret")),
    )


SETTINGS: tuple[Setting, ...] = tuple(_describe(name) for name in Settings.model_fields)


def load_dotenv_file(directory: Path | None = None) -> None:
    """Load `.env` from the working directory without overriding the environment."""
    load_dotenv((directory or Path.cwd()) / ".env", override=False)


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings from the environment, `overrides` winning, validated; or refuse.

    A required setting that is blank counts as missing. Overrides may be text, as in the
    environment, or already Python objects (tests pass both); other names are ignored.
    """
    given = {k: v for k, v in (overrides or {}).items() if k in Settings.model_fields}
    blank = [
        s.name
        for s in SETTINGS
        if s.required and _is_blank(given.get(s.name, os.environ.get(s.name)))
    ]
    if blank:
        raise MissingSettings(blank)
    try:
        return Settings(**given)
    except ValidationError as error:
        name = str(error.errors(include_input=False)[0]["loc"][0])
        raise SettingError(f"Setting {name} has an invalid value.") from None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
