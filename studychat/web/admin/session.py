"""The admin's browser session: a signed cookie handed out for the admin token.

A browser cannot add an Authorization header to a page it navigates to (the admin page,
rq-dashboard's pages), so POST /admin/login exchanges the token for a cookie that
admin_auth accepts in place of the header. The cookie is:

- signed with a key derived from ADMIN_TOKEN, so changing the token ends every session,
  and every web process (every dyno) accepts it without shared state;
- HttpOnly (no script reads it), SameSite=Strict (no other site's page or form makes the
  browser send it, which keeps rq-dashboard's delete and requeue buttons safe from
  cross-site requests), Secure over HTTPS, and sent to /admin paths only;
- valid for SESSION_HOURS, after which the admin enters the token again.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Request, Response
from itsdangerous import BadSignature, TimestampSigner

COOKIE_NAME = "admin_session"
COOKIE_PATH = "/admin"
SESSION_HOURS = 12
SESSION_SECONDS = SESSION_HOURS * 3600
_SUBJECT = b"admin"


def _signer(admin_token: str) -> TimestampSigner:
    # A key of its own, so a cookie reveals nothing about the token and serves no other use.
    key = hmac.new(admin_token.encode(), b"admin-session-cookie", hashlib.sha256).digest()
    return TimestampSigner(key, salt="admin-session", digest_method=hashlib.sha256)


def new_cookie_value(admin_token: str) -> str:
    """A signed, timestamped session value for the admin holding `admin_token`."""
    return _signer(admin_token).sign(_SUBJECT).decode()


def is_valid(value: str | None, admin_token: str) -> bool:
    """Whether `value` is a session this token signed less than SESSION_HOURS ago."""
    if not value:
        return False
    try:
        subject = _signer(admin_token).unsign(value, max_age=SESSION_SECONDS)
    except BadSignature:  # also SignatureExpired
        return False
    return hmac.compare_digest(subject, _SUBJECT)


def served_over_https(request: Request) -> bool:
    """Whether the browser reached us over HTTPS, directly or through Heroku's router.

    X-Forwarded-Proto is believed here only to add the Secure flag, which a forged
    header can make no weaker.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def set_cookie(response: Response, request: Request, admin_token: str) -> None:
    """Start an admin session in the browser that sent `request`."""
    response.set_cookie(
        COOKIE_NAME,
        new_cookie_value(admin_token),
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        secure=served_over_https(request),
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    """End the browser's admin session."""
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        secure=served_over_https(request),
        httponly=True,
        samesite="Strict",
    )
