"""Security headers on every answer, fit for a JSON API.

Each header is set only when the response has none of its own, so a view that serves
HTML (a demo page at `/`) sets its own Content-Security-Policy or Cache-Control, e.g.
with `html_headers()`, and keeps it.
"""

from __future__ import annotations

from flask import Flask, Response

# A JSON answer loads nothing, runs nothing and may not be framed.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
DEFAULT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": JSON_CSP,
    "X-Frame-Options": "DENY",
    # Answers are per participant and per moment (polling): no cache may keep them.
    "Cache-Control": "no-store",
}


def html_headers(csp: str = "default-src 'self'; frame-ancestors 'none'") -> dict[str, str]:
    """Headers an HTML view can return to replace the JSON defaults (its CSP, caching)."""
    return {"Content-Security-Policy": csp, "Cache-Control": "no-cache"}


def add_security_headers(response: Response) -> Response:
    """Add each default header the response does not already carry."""
    for name, value in DEFAULT_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def install_security_headers(app: Flask) -> None:
    """Add the headers to every answer of `app`, errors included."""
    app.after_request(add_security_headers)
