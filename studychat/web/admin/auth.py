"""Bearer-token access to every page under /admin, now and for admin pages added later.

`install_admin_guard(app)` checks each request whose path is under ADMIN_PREFIX before any
view runs, whichever blueprint serves it (the budget report, rq-dashboard mounted at
/admin/rq, ...). Without ADMIN_TOKEN the whole surface is off and answers 404, as if it
did not exist; with it, a request without `Authorization: Bearer <ADMIN_TOKEN>` answers
401. Tokens are compared in constant time. A browser proves the same with the signed
session cookie that POST /admin/login hands out for the token (session.py). The
login and logout routes, and the admin page's shell when a browser asks for HTML, hold
no data and let anyone through, so that a browser can show the login form.
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, Response, request

from studychat.web.admin import session as admin_session
from studychat.web.errors import error_response
from studychat.web.services import services

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin"
UNAUTHORIZED = "This admin page needs the header Authorization: Bearer <ADMIN_TOKEN>."
# The routes that start and end a browser's session.
OPEN_PATHS = frozenset({ADMIN_PREFIX + "/login", ADMIN_PREFIX + "/logout"})


def unauthorized(message: str) -> tuple[Response, int, dict[str, str]]:
    """401 with the challenge HTTP requires, naming the bearer scheme."""
    return error_response(401, message, {"WWW-Authenticate": 'Bearer realm="admin"'})


def is_admin_path(path: str) -> bool:
    """Whether `path` belongs to the admin surface."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_matches(presented: str | None, expected: str) -> bool:
    """Whether the presented token is the admin token, in time independent of its content."""
    if presented is None:
        return False
    # surrogatepass: a lone surrogate smuggled in by a JSON escape is just a wrong token.
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode())


def require_admin():
    """A before_request hook: None to let an admin through, else the 404 or 401 answer."""
    expected = services().settings.ADMIN_TOKEN
    if not expected:
        return error_response(404, f"There is no route {request.path}; see the API in README.")
    if is_open_request():
        return None
    if not is_admin_request(expected):
        logger.warning("admin request refused: %s %s", request.method, request.path)
        return unauthorized(UNAUTHORIZED)
    return None


def is_admin_request(expected: str) -> bool:
    """Whether the request carries the admin token, or the session cookie it was exchanged for."""
    if token_matches(bearer_token(request.headers.get("Authorization")), expected):
        return True
    return admin_session.is_admin()


def is_open_request() -> bool:
    """Login, logout, or a browser loading the admin page's shell (it asks for the token)."""
    if request.path == ADMIN_PREFIX and request.method in ("GET", "HEAD"):
        return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
    return request.path in OPEN_PATHS


def guard_admin_paths():
    """Apply `require_admin` to requests under ADMIN_PREFIX and let every other one pass."""
    return require_admin() if is_admin_path(request.path) else None


def install_admin_guard(app: Flask, admin_token: str) -> None:
    """Protect everything under ADMIN_PREFIX on `app` before any view runs.

    Hooks installed earlier (request ids, metrics) run first, so a refusal is logged
    with its request id; install the guard before anything that reads admin data.
    """
    if admin_token:
        admin_session.install_admin_session(app, admin_token)
    app.before_request(guard_admin_paths)
