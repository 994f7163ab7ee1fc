"""Routes of the study's records: POST /save and POST /check_participation."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from studychat.store.database import has_participated, save_participant_record
from studychat.web.api_doc import documented, json_answer, post, ref
from studychat.web.response_schemas import Participated, Saved
from studychat.web.schemas import CheckParticipationRequest, SaveRequest, parse_body
from studychat.web.services import services

bp = Blueprint("study", __name__)


@bp.post("/save")
@documented(
    post(
        "Store the participant's record once; answer the completion code.",
        SaveRequest,
        {
            "201": json_answer("Stored.", ref(Saved)),
            "304": {"description": "A record exists for this participant; it is kept."},
        },
    )
)
def save():
    """Store the participant's record once and hand back the completion code."""
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
