"""The live study page: GET /admin (the page), its figures, and the admin's browser session.

The page is a static shell (templates/admin.html, static/admin.js): it holds no data, so
admin_auth lets a browser load it without the token. It asks for the token once, trades
it for a signed session cookie (POST /admin/login, session.py), then polls
GET /admin/api/stats every few seconds with that cookie. The same cookie opens
rq-dashboard under /admin/rq. Scripts keep using `Authorization: Bearer <ADMIN_TOKEN>`.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, render_template, request

from studychat.web.admin import session as admin_session
from studychat.web.admin.auth import token_matches
from studychat.web.admin.dashboard import URL_PREFIX as RQ_DASHBOARD_PREFIX
from studychat.web.admin.stats import DEFAULT_CHART_MINUTES, MAX_CHART_MINUTES, study_stats
from studychat.web.api_doc import documented
from studychat.web.errors import error_response
from studychat.web.schemas import json_body
from studychat.web.security_headers import html_headers
from studychat.web.services import services

logger = logging.getLogger(__name__)

bp = Blueprint("admin_page", __name__, url_prefix="/admin")

# The page loads its own script, style and nothing else; no inline code, no other origin.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REFUSED = "This is not the admin token."
_OFF = {"description": "The admin pages are off (no ADMIN_TOKEN is set)."}
_ADMIN = {"tags": ["admin"], "security": [{"adminToken": []}]}
STATS_OPERATION = {
    "summary": "The live study page's figures and chats and errors per minute.",
    **_ADMIN,
    "parameters": [
        {
            "name": "minutes",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 60},
        }
    ],
    "responses": {
        "200": {"description": "The figures (see docs/observability.md)."},
        "400": {"description": "`minutes` is not a whole number from 1 to 1440."},
        "401": {"description": "Neither the admin token nor an admin session."},
        "404": _OFF,
    },
}

LOGIN_OPERATION = {
    "summary": "Trade the admin token for a session cookie (browsers).",
    "tags": ["admin"],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "minLength": 1}},
                    "required": ["token"],
                }
            }
        },
    },
    "responses": {
        "204": {"description": "Session started (Set-Cookie: admin_session)."},
        "400": {"description": "No token in the body."},
        "401": {"description": "Not the admin token."},
        "404": _OFF,
    },
}

LOGOUT_OPERATION = {
    "summary": "End the browser's admin session.",
    "tags": ["admin"],
    "responses": {"204": {"description": "Session cookie cleared."}, "404": _OFF},
}
BODY_NEEDED = 'Send the admin token as JSON: {"token": "..."}.'


@bp.get("")
def page():
    """The live study page (a shell: its figures come from /admin/api/stats)."""
    page = render_template("admin.html", rq_dashboard_url=RQ_DASHBOARD_PREFIX + "/")
    return page, 200, html_headers(PAGE_CSP)


@bp.post("/login")
@documented(LOGIN_OPERATION)
def login():
    """Start a browser session for the admin token sent as JSON `{"token": ...}`."""
    expected = services().settings.ADMIN_TOKEN
    body = json_body()
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        return error_response(400, BODY_NEEDED)
    if not token_matches(token, expected):
        logger.warning("admin login refused")
        return error_response(401, REFUSED)
    admin_session.start()
    logger.info("admin session started")
    return Response(status=204)


@bp.post("/logout")
@documented(LOGOUT_OPERATION)
def logout():
    """End the browser's admin session."""
    admin_session.end()
    return Response(status=204)


@bp.get("/api/stats")
@documented(STATS_OPERATION)
def stats():
    """The page's figures now, and chats and errors per minute over `minutes` (default 60)."""
    raw = request.args.get("minutes", str(DEFAULT_CHART_MINUTES))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CHART_MINUTES:
        return error_response(
            400, f"Query parameter 'minutes' must be a whole number from 1 to {MAX_CHART_MINUTES}."
        )
    return jsonify(study_stats(services(), int(raw)))
