"""Every setting of the service, named once, with its default and its documentation.

Web and worker processes read the same table. `.env.example` documents each entry
(a test keeps the two in step). A production process refuses to start while a
required setting is missing and names all the missing ones at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from limits import parse_many

from studychat.exceptions import MissingSettings, SettingError

logger = logging.getLogger(__name__)

# An admin token shorter than this could be guessed; `openssl rand -hex 32` makes a good one.
MIN_ADMIN_TOKEN_LENGTH = 24


def _int(value: str) -> int:
    return int(value)


def _float(value: str) -> float:
    return float(value)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _optional_int(value: str) -> int | None:
    return int(value) if value.strip() else None


def _rate_limit(value: str) -> str:
    """A flask-limiter limit string such as `20/minute` (empty: no limit), checked at start."""
    if value.strip():
        parse_many(value)  # raises ValueError, reported as an invalid setting
    return value.strip()


def _admin_token(value: str) -> str:
    """The admin bearer token (empty: admin surface off); short, guessable ones are refused."""
    token = value.strip()
    if token and len(token) < MIN_ADMIN_TOKEN_LENGTH:
        raise ValueError("admin token too short")
    return token


def _bool(value: str) -> bool:
    """true/false, yes/no, on/off or 1/0, in any case; anything else is refused at start."""
    choice = value.strip().lower()
    if choice in ("true", "yes", "on", "1"):
        return True
    if choice in ("false", "no", "off", "0", ""):
        return False
    raise ValueError("expected true or false")


def _cert_reqs(value: str) -> str:
    """redis-py's `ssl_cert_reqs`: how strictly a rediss:// server's certificate is checked."""
    choice = value.strip().lower()
    if choice not in ("required", "optional", "none"):
        raise ValueError("expected required, optional or none")
    return choice


@dataclass(frozen=True)
class Setting:
    """One environment setting: its name, default, parser and meaning."""

    name: str
    doc: str
    default: str | None = None
    required: bool = False
    parse: Callable[[str], Any] = str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("OPENAI_API_KEY", "API key of the model service.", required=True, secret=True),
    Setting(
        "OPENAI_BASE_URL",
        "Base URL of any OpenAI-compatible server (Azure, vLLM, Ollama); empty: OpenAI.",
        default="",
    ),
    Setting("GPT_VERSION", "Model every chat turn uses, e.g. gpt-4o-mini.", required=True),
    Setting("GPT_TOKEN_LIMIT", "Cap on output tokens per answer.", default="1000", parse=_int),
    Setting(
        "FRONTEND_URL",
        "Origins allowed by CORS, comma-separated, e.g. https://study.example.org.",
        required=True,
        parse=_csv,
    ),
    Setting("DATABASE_URL", "MongoDB connection string.", required=True, secret=True),
    Setting("DATABASE_NAME", "MongoDB database that holds the collections.", default="study"),
    Setting("REDIS_URL", "Redis connection string (queue, results).", required=True, secret=True),
    Setting(
        "REDIS_SSL_CERT_REQS",
        "Check of the Redis server's TLS certificate on rediss:// URLs: required, optional"
        " or none (Heroku Redis presents a self-signed one).",
        default="required",
        parse=_cert_reqs,
    ),
    Setting("PROLIFIC_CODE", "Completion code handed to participants.", required=True),
    Setting(
        "PROLIFIC_URL",
        "Completion URL; empty: Prolific's standard URL with PROLIFIC_CODE.",
        default="",
    ),
    Setting("PORT", "Port the web process listens on.", default="5000", parse=_int),
    Setting(
        "MAX_CONTENT_LENGTH",
        "Largest request body in bytes (images travel inline as data URLs).",
        default=str(8 * 1024 * 1024),
        parse=_int,
    ),
    Setting(
        "MAX_MESSAGES",
        "Most messages one POST /chat may carry (the whole conversation so far).",
        default="100",
        parse=_int,
    ),
    Setting(
        "MAX_MESSAGE_CHARS",
        "Most characters in one message's content.",
        default="20000",
        parse=_int,
    ),
    Setting(
        "MAX_TOTAL_CHARS",
        "Most characters in all message contents of one POST /chat together.",
        default="100000",
        parse=_int,
    ),
    Setting(
        "MAX_IMAGE_BYTES",
        "Largest image (decoded bytes) a message may carry as a base64 data URL.",
        default=str(5 * 1024 * 1024),
        parse=_int,
    ),
    Setting(
        "CHAT_RATE_LIMIT",
        "Chat turns one client may start, e.g. `20/minute` (client: participantId, else IP);"
        " empty: no limit.",
        default="20/minute",
        parse=_rate_limit,
    ),
    Setting(
        "PROXY_FIX_X_FOR",
        "Proxies in front of the app that append to X-Forwarded-For (Heroku: 1; none: 0).",
        default="1",
        parse=_int,
    ),
    Setting(
        "PARTICIPANT_TOKEN_BUDGET",
        "Most model tokens one participantId may spend; empty: no cap.",
        default="",
        parse=_optional_int,
    ),
    Setting(
        "STUDY_TOKEN_BUDGET",
        "Most model tokens all participants together may spend; empty: no cap.",
        default="",
        parse=_optional_int,
    ),
    Setting(
        "ADMIN_TOKEN",
        "Bearer token of the /admin pages (24+ characters); empty: /admin is off (404).",
        default="",
        parse=_admin_token,
        secret=True,
    ),
    Setting(
        "DEMO_PAGE",
        "Serve the demo participant page at / (true/false); `make run` turns it on.",
        default="false",
        parse=_bool,
    ),
    Setting("RESULT_TTL_S", "Seconds an answer stays readable.", default="86400", parse=_int),
    Setting("LLM_TIMEOUT_S", "Seconds one upstream call may take.", default="60", parse=_float),
    Setting("LLM_MAX_RETRIES", "Retries of a failed upstream call.", default="4", parse=_int),
    # 512: room for 2 s answers to ~220 participants polling, or 10 s answers to ~50; a
    # waiting call costs a thread and ~0.1 MB (make bench: 450 in flight, worker 156 MB).
    Setting(
        "WORKER_CONCURRENCY",
        "Jobs one worker process runs at once (model calls are I/O-bound).",
        default="512",
        parse=_int,
    ),
    Setting(
        "WORKER_SHUTDOWN_GRACE_S",
        "Seconds a stopping worker lets jobs finish before handing them back to the queue.",
        default="20",
        parse=_float,
    ),
    Setting(
        "WORKER_HEARTBEAT_S",
        "Seconds between heartbeats of running jobs; a job silent for 3 of them is rerun.",
        default="5",
        parse=_int,
    ),
    Setting(
        "REDIS_MAX_CONNECTIONS",
        "Redis connections one process may open (hosted plans cap clients; requests wait).",
        default="50",
        parse=_int,
    ),
    Setting("LOG_LEVEL", "Logging level of web and worker.", default="INFO"),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}


def load_dotenv_file(directory: Path | None = None) -> None:
    """Load `.env` from the working directory without overriding the environment."""
    load_dotenv((directory or Path.cwd()) / ".env", override=False)


def check_settings_or_exit() -> None:
    """Refuse to start, naming every missing setting, before a server process forks."""
    load_dotenv_file()
    try:
        load_settings()
    except (MissingSettings, SettingError) as error:
        print(f"Refusing to start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def load_settings(source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read every setting from `source` (default: the environment), parsed, or refuse.

    Values that are already parsed (tests pass Python objects) are kept as they are.
    """
    source = os.environ if source is None else source
    missing = [s.name for s in SETTINGS if s.required and _is_blank(source.get(s.name))]
    if missing:
        raise MissingSettings(missing)
    return {s.name: _parse(s, source.get(s.name, s.default)) for s in SETTINGS}


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _parse(setting: Setting, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return setting.parse(value)
    except ValueError:
        raise SettingError(f"Setting {setting.name} has an invalid value.") from None


def prolific_url(settings: Mapping[str, Any]) -> str:
    """The completion URL participants are sent to."""
    code = settings["PROLIFIC_CODE"]
    return settings["PROLIFIC_URL"] or f"https://app.prolific.com/submissions/complete?cc={code}"
