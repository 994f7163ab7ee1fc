"""Routes of the study's records: POST /save and POST /check_participation."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify

from studychat.exceptions import Refused
from studychat.store.database import (
    has_participated,
    save_participant_record,
    save_session_record,
)
from studychat.study.sessions import find_by_token, mark_saved
from studychat.study.turns import settle_pending
from studychat.web.api_doc import documented, error, json_answer, post, ref
from studychat.web.response_schemas import Participated, Saved
from studychat.web.schemas import (
    CheckParticipationRequest,
    SaveRequest,
    SessionSaveRequest,
    parse_body,
)
from studychat.web.services import services
from studychat.web.sessions import (
    UNKNOWN_SESSION,
    configured_study,
    is_session_body,
    refuse_legacy_when_off,
    turn_context,
)

bp = Blueprint("study", __name__)


@bp.post("/save")
@documented(
    post(
        "Store the participant's record once; answer the completion code.",
        {"anyOf": [ref(SaveRequest), ref(SessionSaveRequest)]},
        {
            "201": json_answer("Stored.", ref(Saved)),
            "304": {"description": "A record exists for this participant; it is kept."},
            "401": error("The sessionToken is unknown or expired."),
            "404": error("A sessionToken was sent, but no study is configured."),
            "410": error("A legacy body, and LEGACY_API is false."),
        },
    )
)
def save():
    """Store the participant's record once and hand back the completion code."""
    if is_session_body():
        return session_save()
    refuse_legacy_when_off()
    body = parse_body(SaveRequest)
    made = services()
    created = save_participant_record(
        made.db, body.participantId, body.messages, body.tasks, body.condition
    )
    if not created:
        # Existing frontends read 304 as "already saved"; the record is never overwritten.
        return Response(status=304)
    settings = made.settings
    return jsonify(
        message="OK", prolificCode=settings.PROLIFIC_CODE, prolificUrl=settings.completion_url
    ), 201


def session_save():
    """Close the session and store its record: what the server holds, plus what was sent."""
    study = configured_study()
    body = parse_body(SessionSaveRequest)
    made = services()
    session = find_by_token(made.db, body.sessionToken)
    if session is None:
        raise Refused(401, UNKNOWN_SESSION)
    saved_at = session.get("savedAt") or datetime.now(UTC)
    mark_saved(made.db, session["_id"], saved_at)  # first: no turn starts after this
    session = settle_pending(turn_context(), session)
    fields = {"tasks": body.tasks, **body.other_fields()}
    if not save_session_record(made.db, session, fields, saved_at):
        return Response(status=304)
    condition = study.conditions.get(session["condition"])
    code = condition.completion_code if condition else made.settings.PROLIFIC_CODE
    url = condition.completion_url if condition else made.settings.completion_url
    return jsonify(message="OK", prolificCode=code, prolificUrl=url), 201


@bp.post("/check_participation")
@documented(
    post(
        "Whether a record exists for this participant id.",
        CheckParticipationRequest,
        {
            "302": json_answer("A record exists.", ref(Participated)),
            "204": {"description": "No record exists."},
        },
    )
)
def check_participation():
    """302 with `participated: true` when a record exists, 204 when not (frontends read these)."""
    body = parse_body(CheckParticipationRequest)
    if has_participated(services().db, body.id):
        return jsonify(participated=True), 302
    return Response(status=204)
