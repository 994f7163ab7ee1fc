"""The admin's browser session: Flask's own signed session, handed out for the admin token.

A browser cannot add an Authorization header to a page it navigates to (the admin page,
rq-dashboard's pages), so POST /admin/login exchanges the token for Flask's session
cookie, which the admin guard accepts in place of the header. The cookie is:

- signed with a key derived from ADMIN_TOKEN, so changing the token ends every session,
  and every web process (every dyno) accepts it without shared state;
- HttpOnly (no script reads it), SameSite=Strict (no other site's page or form makes the
  browser send it, which keeps rq-dashboard's delete and requeue buttons safe from
  cross-site requests), Secure over HTTPS, and sent to /admin paths only;
- valid for SESSION_HOURS after login (not renewed by use), after which the admin enters
  the token again.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

COOKIE_NAME = "admin_session"
COOKIE_PATH = "/admin"
SESSION_HOURS = 12
SESSION_SECONDS = SESSION_HOURS * 3600
ADMIN = "admin"


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session under /admin only, Secure over HTTPS."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """No session outside /admin: polls and chats never build a signer for nothing."""
        if request.path != COOKIE_PATH and not request.path.startswith(COOKIE_PATH + "/"):
            return None  # Flask then uses a null session and saves nothing
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure over HTTPS, directly or through Heroku's router; not on local plain HTTP.

        X-Forwarded-Proto is believed here only to add the Secure flag, which a forged
        header can make no weaker.
        """
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return request.is_secure or forwarded == "https"


def install_admin_session(app: Flask, admin_token: str) -> None:
    """Sign `app`'s session with a key of its own, derived from `admin_token`."""
    # A key of its own, so a cookie reveals nothing about the token and serves no other use.
    app.secret_key = hmac.new(
        admin_token.encode(), b"admin-session-cookie", hashlib.sha256
    ).hexdigest()
    app.session_interface = AdminSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH=COOKIE_PATH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_SECONDS),
        SESSION_REFRESH_EACH_REQUEST=False,
    )


def start() -> None:
    """Make the current browser an admin for SESSION_HOURS."""
    session.clear()
    session[ADMIN] = True
    session.permanent = True


def end() -> None:
    """End the current browser's admin session (its cookie is deleted)."""
    session.clear()


def is_admin() -> bool:
    """Whether the current browser holds a valid admin session."""
    return session.get(ADMIN) is True
