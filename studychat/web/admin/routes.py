"""Admin pages under /admin (admin_auth.py guards every one): GET /admin/budget."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from studychat.chat import budgets
from studychat.web.errors import error_response
from studychat.web.response_schemas import BudgetReport, Spending
from studychat.web.schemas import MAX_ID_CHARS
from studychat.web.services import services

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _answer(spending: budgets.Spending) -> Spending:
    return Spending(spent=spending.spent, inFlight=spending.held, cap=spending.cap)


@bp.get("/budget")
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
