"""Admin routes under /admin (auth.py guards every one): the budget, and erasing a participant."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, jsonify, request, send_file

from studychat.chat import budgets
from studychat.export.cli import DOWNLOADS, export_download
from studychat.store.erasure import erase_participant
from studychat.web.api_doc import (
    ADMIN_OFF,
    CONTRACT,
    UNAVAILABLE,
    documented,
    error,
    json_answer,
    ref,
)
from studychat.web.errors import error_response
from studychat.web.response_schemas import BudgetReport, Spending
from studychat.web.schemas import MAX_ID_CHARS
from studychat.web.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _answer(spending: budgets.Spending) -> Spending:
    return Spending(spent=spending.spent, inFlight=spending.held, cap=spending.cap)


@bp.get("/budget")
@documented(
    {
        "summary": "Tokens spent and in flight, for the study and optionally one participant.",
        "tags": [CONTRACT],
        "security": [{"adminToken": []}],
        "parameters": [
            {
                "name": "participantId",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
            }
        ],
        "responses": {
            "200": json_answer("The spending report.", ref(BudgetReport)),
            "400": error("The participantId parameter is empty or too long."),
            "401": error("The Authorization header does not carry the admin token."),
            "404": error(ADMIN_OFF),
            "414": {
                "description": "The query is longer than the HTTP server takes (gunicorn:"
                " 4094 bytes in the request line); it answers this itself, not in JSON.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "503": error(UNAVAILABLE),
        },
    }
)
def budget():
    """Tokens the study has spent and holds in flight, the caps, and optionally one participant."""
    made = services()
    caps = budgets.Caps.from_settings(made.settings)
    participant_id = request.args.get("participantId")
    if participant_id is not None and not 0 < len(participant_id) <= MAX_ID_CHARS:
        return error_response(
            400, f"Query parameter 'participantId' must have 1 to {MAX_ID_CHARS} characters."
        )
    participant = None
    if participant_id is not None:
        participant = _answer(budgets.participant_spending(made.redis, participant_id, caps))
    report = BudgetReport(
        study=_answer(budgets.study_spending(made.redis, caps)),
        participantCap=caps.participant,
        participant=participant,
    )
    return jsonify(report.model_dump())


@bp.delete("/participants/<participant_id>")
@documented(
    {
        "summary": "Erase everything of one participant (record, session, transcripts, Redis).",
        "tags": ["admin"],
        "security": [{"adminToken": []}],
        "parameters": [
            {
                "name": "participant_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
            }
        ],
        "responses": {
            "200": json_answer(
                "Erased (or nothing was there): how many items went, by kind.",
                {"type": "object", "properties": {"removed": {"type": "object"}}},
            ),
            "400": error("The participant id is too long."),
            "401": error("The Authorization header does not carry the admin token."),
            "404": error(ADMIN_OFF),
            "503": error(UNAVAILABLE),
        },
    }
)
def delete_participant(participant_id: str):
    """Erase one participant on request; erasing again does no harm."""
    if len(participant_id) > MAX_ID_CHARS:
        return error_response(400, f"A participant id has at most {MAX_ID_CHARS} characters.")
    made = services()
    who = f"admin:{request.remote_addr or 'unknown'}"
    return jsonify(removed=erase_participant(made.db, made.redis, participant_id, who))


@bp.get("/export/<name>")
@documented(
    {
        "summary": "Download an export: data, chat_log or sessions as JSON lines; CSV tables.",
        "tags": ["admin"],
        "security": [{"adminToken": []}],
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": sorted(DOWNLOADS)},
            }
        ],
        "responses": {
            "200": {"description": "The file, as `flask --app app export` writes it."},
            "401": error("Neither the admin token nor an admin session."),
            "404": error("No such export, or the admin pages are off."),
            "503": error(UNAVAILABLE),
        },
    }
)
def download_export(name: str):
    """One export as a file download (the same bytes as the command line writes)."""
    if name not in DOWNLOADS:
        return error_response(404, f"No export {name}; there are: {', '.join(sorted(DOWNLOADS))}.")
    settings = services().settings
    folder = Path(tempfile.mkdtemp(prefix="export-"))
    try:
        path = export_download(settings.DATABASE_URL, settings.DATABASE_NAME, name, folder)
        answer = send_file(path, as_attachment=True, download_name=name, mimetype=mimetype(name))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    answer.call_on_close(lambda: shutil.rmtree(folder, ignore_errors=True))
    return answer


def mimetype(name: str) -> str:
    """The media type of an export file."""
    return "text/csv; charset=utf-8" if name.endswith(".csv") else "application/x-ndjson"
