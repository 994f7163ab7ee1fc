"""The web side of study sessions: telling a session body from a legacy one, and its token."""

from __future__ import annotations

from typing import Any

from studychat.exceptions import Refused
from studychat.study.definition import Study
from studychat.study.sessions import find_by_token
from studychat.study.turns import Turn
from studychat.web.schemas import json_body
from studychat.web.services import services

NO_STUDY = "No study is configured on this server (STUDY_FILE is not set)."
UNKNOWN_SESSION = "The sessionToken is unknown or has expired; start again with POST /sessions."
SAVED = "This participant's record is already saved; the session is closed."
LEGACY_OFF = (
    "This service takes study sessions only: start one with POST /sessions, then send"
    ' {"sessionToken", "message"} to /chat and {"sessionToken", ...} to /save.'
)


def is_session_body() -> bool:
    """Whether the request body carries a sessionToken (else it is a legacy body)."""
    body = json_body()
    return isinstance(body, dict) and "sessionToken" in body


def refuse_legacy_when_off() -> None:
    """410 for a legacy body when LEGACY_API is false: the open proxy is closed."""
    if not services().settings.LEGACY_API:
        raise Refused(410, LEGACY_OFF)


def configured_study() -> Study:
    """The study of this server, or 404 when there is none."""
    study = services().study
    if study is None:
        raise Refused(404, NO_STUDY)
    return study


def open_session_of(token: str) -> dict[str, Any]:
    """The session a token opens: 401 when unknown or expired, 409 once saved."""
    session = find_by_token(services().db, token)
    if session is None:
        raise Refused(401, UNKNOWN_SESSION)
    if session.get("savedAt") is not None:
        raise Refused(409, SAVED)
    return session


def turn_context() -> Turn:
    """The clients, settings and study a session turn needs."""
    made = services()
    study = configured_study()
    return Turn(made.db, made.redis, made.queue, made.settings, study, made.job_updates.channel)
