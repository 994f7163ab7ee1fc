"""Admin pages under /admin (admin_auth.py guards every one): GET /admin/budget."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request

from studychat.chat import budgets
from studychat.web.errors import error_response
from studychat.web.response_schemas import BudgetReport, Spending
from studychat.web.services import services

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

MAX_PARTICIPANT_ID = 200


def _answer(spending: budgets.Spending) -> Spending:
    return Spending(spent=spending.spent, inFlight=spending.held, cap=spending.cap)


@bp.get("/budget")
def budget():
    """Tokens the study has spent and holds in flight, the caps, and optionally one participant."""
    made = services()
    caps = budgets.Caps.from_settings(made.settings)
    participant_id = request.args.get("participantId")
    if participant_id is not None and not 0 < len(participant_id) <= MAX_PARTICIPANT_ID:
        return error_response(400, "Query parameter 'participantId' must have 1 to 200 characters.")
    participant = None
    if participant_id is not None:
        participant = _answer(budgets.participant_spending(made.redis, participant_id, caps))
    report = BudgetReport(
        study=_answer(budgets.study_spending(made.redis, caps)),
        participantCap=caps.participant,
        participant=participant,
    )
    return jsonify(report.model_dump())
