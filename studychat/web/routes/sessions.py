"""POST /sessions: a participant's study session, created and assigned, or resumed."""

from __future__ import annotations

from flask import Blueprint, jsonify

from studychat.exceptions import Refused
from studychat.store.database import has_participated
from studychat.study.sessions import open_session
from studychat.study.turns import awaited_job, public_view, settle_pending
from studychat.web.api_doc import RETRY_AFTER, documented, error, json_answer, post, ref
from studychat.web.response_schemas import SessionOpened
from studychat.web.schemas import SessionStartRequest, parse_body
from studychat.web.services import services
from studychat.web.sessions import SAVED, configured_study, turn_context

bp = Blueprint("sessions", __name__)


@bp.post("/sessions")
@documented(
    post(
        "Start a participant's session (assigned to a condition), or resume it.",
        SessionStartRequest,
        {
            "201": json_answer("A new session.", ref(SessionOpened)),
            "200": json_answer("The participant's session so far.", ref(SessionOpened)),
            "404": error("No study is configured (STUDY_FILE)."),
            "409": error("This participant has already saved."),
            "429": error(
                "Too many requests from this address.", headers={"Retry-After": RETRY_AFTER}
            ),
        },
    )
)
def start_session():
    """Create the participant's session (201), or hand back the one they have (200)."""
    study = configured_study()
    body = parse_body(SessionStartRequest)
    made = services()
    if has_participated(made.db, body.participantId):
        raise Refused(409, SAVED)
    prolific = {"studyId": body.studyId, "sessionId": body.sessionId}
    opened = open_session(made.db, study, body.participantId, prolific, made.settings.SESSION_TTL_S)
    session = settle_pending(turn_context(), opened.session)
    condition = study.conditions.get(session["condition"])
    answer = jsonify(
        sessionToken=session["token"],
        condition=session["condition"],
        messages=public_view(session),
        client=condition.client if condition else {},
        maxTurns=study.max_turns,
        pendingJobId=awaited_job(session),
    )
    return answer, 201 if opened.created else 200
