"""Security headers on every answer; an HTML view keeps its own policy."""

from __future__ import annotations

import pytest
from flask import Response

from studychat.web.security_headers import DEFAULT_HEADERS, JSON_CSP, html_headers

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/check_participation", {"id": "P-nobody-here"}, 204),
        ("post", "/chat", {"messages": []}, 400),
        ("get", "/nope", None, 404),
        ("get", "/chat", None, 405),
        ("get", "/openapi.json", None, 200),
        ("get", "/admin/budget", None, 404),
    ],
)
def test_every_answer_carries_the_headers(client, method, path, body, status):
    answer = getattr(client, method)(path, json=body)
    assert answer.status_code == status
    for name, value in EXPECTED.items():
        assert answer.headers[name] == value


def test_faults_carry_the_headers(app):
    def explode():
        raise RuntimeError("boom")

    app.add_url_rule("/explode", view_func=explode)
    answer = app.test_client().get("/explode")
    assert answer.status_code == 500
    assert answer.headers["Content-Security-Policy"] == JSON_CSP


def test_an_html_page_keeps_its_own_policy(app):
    page_csp = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"

    def page():
        return Response("<h1>demo</h1>", mimetype="text/html", headers=html_headers(page_csp))

    app.add_url_rule("/demo", view_func=page)
    answer = app.test_client().get("/demo")
    assert answer.headers["Content-Security-Policy"] == page_csp
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert len(answer.headers.getlist("Content-Security-Policy")) == 1


def test_defaults_are_the_documented_ones():
    assert DEFAULT_HEADERS == EXPECTED
