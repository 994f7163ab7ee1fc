"""Bearer-token access to every page under /admin, now and for admin pages added later.

`install_admin_guard(app)` checks each request whose path is under ADMIN_PREFIX before any
view runs, whichever blueprint serves it (the budget report, rq-dashboard mounted at
/admin/rq, ...). Without ADMIN_TOKEN the whole surface is off and answers 404, as if it
did not exist; with it, a request without `Authorization: Bearer <ADMIN_TOKEN>` answers
401. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, current_app, request

from errors import error_response

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin"
UNAUTHORIZED = "This admin page needs the header Authorization: Bearer <ADMIN_TOKEN>."


def is_admin_path(path: str) -> bool:
    """Whether `path` belongs to the admin surface."""
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_matches(presented: str | None, expected: str) -> bool:
    """Whether the presented token is the admin token, in time independent of its content."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def require_admin():
    """A before_request hook: None to let an admin through, else the 404 or 401 answer."""
    expected = current_app.config.get("ADMIN_TOKEN")
    if not expected:
        return error_response(404, f"There is no route {request.path}; see the API in README.")
    if not token_matches(bearer_token(request.headers.get("Authorization")), expected):
        logger.warning("admin request refused: %s %s", request.method, request.path)
        return error_response(401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer realm="admin"'})
    return None


def guard_admin_paths():
    """Apply `require_admin` to requests under ADMIN_PREFIX and let every other one pass."""
    return require_admin() if is_admin_path(request.path) else None


def install_admin_guard(app: Flask) -> None:
    """Protect everything under ADMIN_PREFIX on `app`, before any other hook or view."""
    app.before_request_funcs.setdefault(None, []).insert(0, guard_admin_paths)
