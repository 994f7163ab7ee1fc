"""The live study page's routes: its shell, login and logout, and its figures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from studychat.factory import create_app
from studychat.web.admin.pages import PAGE_CSP
from studychat.web.services import close_services

TOKEN = "admin-token-for-the-page-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture()
def page_app(stack_env) -> Iterator[Flask]:
    app = create_app(stack_env | {"ADMIN_TOKEN": TOKEN})
    yield app
    close_services(app)


def test_a_browser_gets_the_page_shell_without_the_token(page_app):
    answer = page_app.test_client().get("/admin", headers=BROWSER)
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert answer.headers["Content-Security-Policy"] == PAGE_CSP
    page = answer.get_data(as_text=True)
    assert 'id="login-form"' in page
    assert '<script src="/static/admin/admin.js" defer></script>' in page
    assert "<script>" not in page  # no inline script: the CSP would refuse it


def test_the_page_script_and_style_are_served(page_app):
    client = page_app.test_client()
    script = client.get("/static/admin/admin.js")
    assert (script.status_code, script.mimetype) == (200, "text/javascript")
    assert "/admin/api/stats" in script.get_data(as_text=True)
    assert client.get("/static/admin/admin.css").status_code == 200


def test_without_an_admin_token_the_page_and_login_do_not_exist(client):
    assert client.get("/admin", headers=BROWSER).status_code == 404
    assert client.post("/admin/login", json={"token": TOKEN}).status_code == 404
    assert client.get("/admin/api/stats", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"token": "wrong-wrong-wrong-wrong-wrong"}, 401, "This is not the admin token."),
        ({"token": TOKEN + "x"}, 401, "This is not the admin token."),
        ({}, 400, 'Send the admin token as JSON: {"token": "..."}.'),
        ({"token": 12345}, 400, 'Send the admin token as JSON: {"token": "..."}.'),
        ([TOKEN], 400, 'Send the admin token as JSON: {"token": "..."}.'),
    ],
)
def test_login_refuses_anything_but_the_token(page_app, body, status, error):
    answer = page_app.test_client().post("/admin/login", json=body)
    assert answer.status_code == status
    assert answer.get_json() == {"error": error}
    assert "Set-Cookie" not in answer.headers


def test_login_with_the_token_opens_the_figures(page_app):
    client = page_app.test_client()
    assert client.get("/admin/api/stats").status_code == 401
    assert client.post("/admin/login", json={"token": TOKEN}).status_code == 204
    stats = client.get("/admin/api/stats")
    assert stats.status_code == 200
    assert set(stats.get_json()) >= {
        "participantsSaved",
        "chatsLastHour",
        "errorRateLastHour",
        "queueDepth",
        "workersAlive",
        "tokens",
        "series",
    }


def test_scripts_read_the_figures_with_the_bearer_token(page_app):
    answer = page_app.test_client().get("/admin/api/stats?minutes=5", headers=BEARER)
    assert answer.status_code == 200
    assert len(answer.get_json()["series"]) == 5


@pytest.mark.parametrize("minutes", ["0", "1441", "abc", "-5", "2.5", ""])
def test_the_chart_span_must_be_1_to_1440_minutes(page_app, minutes):
    answer = page_app.test_client().get(f"/admin/api/stats?minutes={minutes}", headers=BEARER)
    assert answer.status_code == 400
    assert answer.get_json() == {
        "error": "Query parameter 'minutes' must be a whole number from 1 to 1440."
    }
