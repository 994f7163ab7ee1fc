"""Routes of a chat turn: POST /chat queues it, POST /check_response answers for it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from studychat.chat.budgets import PARTICIPANT, STUDY, admit_chat
from studychat.chat.provenance import utc_iso
from studychat.chat.task_queue import enqueue_chat, new_job_id
from studychat.exceptions import BadRequest
from studychat.study import turns
from studychat.web.access_log import mark_pending_poll
from studychat.web.api_doc import RETRY_AFTER, documented, error, json_answer, post, ref
from studychat.web.errors import error_response
from studychat.web.polls import poll_outcome
from studychat.web.response_schemas import ChatAnswer, JobAccepted, Processing
from studychat.web.schemas import (
    ChatRequest,
    CheckResponseRequest,
    SessionChatRequest,
    json_body,
    parse_body,
)
from studychat.web.services import services
from studychat.web.sessions import (
    configured_study,
    is_session_body,
    open_session_of,
    refuse_legacy_when_off,
    turn_context,
)

bp = Blueprint("chat", __name__)

HOLDS_CONVERSATION = (
    "Field 'messages' is not accepted with a sessionToken: the server holds the"
    " conversation; send only the new message as 'message'."
)
UNKNOWN_JOB = "No chat job with this jobId exists; it may have expired."
FAILED_JOB = "The model call for this job failed."
BUDGET_SPENT = {
    PARTICIPANT: "This participant's token budget is spent; no more chat turns can be started.",
    STUDY: "The study's token budget is spent; no more chat turns can be started.",
}


@bp.post("/chat")
@documented(
    post(
        "Queue one chat turn; poll POST /check_response with the jobId.",
        {"anyOf": [ref(ChatRequest), ref(SessionChatRequest)]},
        {
            "202": json_answer("Queued.", ref(JobAccepted)),
            "401": error("The sessionToken is unknown or expired."),
            "404": error("A sessionToken was sent, but no study is configured."),
            "409": error("The session's previous answer is pending, or it is saved."),
            "410": error("A legacy body, and LEGACY_API is false."),
            "429": error(
                "Too many chat requests (Retry-After says when to try again), a token"
                " budget is spent, or the session's conversation has reached its end.",
                headers={"Retry-After": RETRY_AFTER},
            ),
        },
    )
)
def chat():
    """Queue one chat turn; answer at once with the job id."""
    received_at = utc_iso()
    if is_session_body():
        return session_chat(received_at)
    refuse_legacy_when_off()
    body = parse_body(ChatRequest)
    messages = [message.model_dump(exclude_none=True) for message in body.messages]
    made = services()
    job_id = queued_job_id()
    # Checked and held atomically before anything is queued: no upstream call over budget.
    spent = admit_chat(made.redis, job_id, body.participantId, messages, made.settings)
    if spent:
        return error_response(429, BUDGET_SPENT[spent])
    enqueue_chat(
        made.queue,
        messages,
        body.participantId,
        made.settings,
        job_id=job_id,
        stream=body.stream,
        received_at=received_at,
        updates_channel=made.job_updates.channel,
    )
    return jsonify(jobId=job_id), 202


def session_chat(received_at: str):
    """Queue a session's next turn: the server adds the prompt and the conversation."""
    configured_study()
    if "messages" in json_body():
        raise BadRequest(HOLDS_CONVERSATION)
    body = parse_body(SessionChatRequest)
    session = open_session_of(body.sessionToken)
    message = body.message.model_dump(exclude_none=True)
    job_id = queued_job_id()
    turns.start(turn_context(), session, message, body.stream, received_at, job_id)
    return jsonify(jobId=job_id), 202


def queued_job_id() -> str:
    """The id of a job about to be queued, noted so that its long polls wait at once."""
    job_id = new_job_id()
    services().job_updates.note_queued(job_id)
    return job_id


@bp.post("/check_response")
@documented(
    post(
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
    )
)
def check_response():
    """Say whether the answer is ready, and give it when it is."""
    body = parse_body(CheckResponseRequest)
    made = services()
    state = poll_outcome(made.redis, made.job_updates, body.jobId, body.wait)
    if state is None:
        return still_processing()
    if state.body is not None:
        return Response(state.body, status=state.status_code, mimetype="application/json")
    if state.rq_status is None:
        return error_response(404, UNKNOWN_JOB)
    return error_response(502, FAILED_JOB)


def still_processing() -> Response:
    """The answer to a poll that comes before the model's; left out of the access log."""
    mark_pending_poll(request.environ)
    return jsonify(processing=True)
