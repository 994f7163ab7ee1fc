"""The demo participant page is served at / only where DEMO_PAGE is true, under its CSP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask

from studychat.exceptions import SettingError
from studychat.factory import create_app
from studychat.web.routes.demo import DEMO_CSP
from studychat.web.security_headers import JSON_CSP
from studychat.web.services import close_services


@pytest.fixture()
def demo_app(stack_env) -> Iterator[Flask]:
    """The app with the demo page switched on."""
    made = create_app(stack_env | {"DEMO_PAGE": "true"})
    yield made
    close_services(made)


def test_page_is_off_by_default_and_root_answers_the_json_404(client):
    for path in ("/", "/demo/demo.js"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.get_json() == {"error": f"There is no route {path}; see the API in README."}
        assert answer.headers["Content-Security-Policy"] == JSON_CSP


@pytest.mark.parametrize("value", ["false", "0", "no", ""])
def test_false_values_keep_the_page_off(stack_env, value):
    made = create_app(stack_env | {"DEMO_PAGE": value})
    try:
        assert made.test_client().get("/").status_code == 404
    finally:
        close_services(made)


def test_a_value_that_is_not_a_boolean_refuses_to_start(stack_env):
    with pytest.raises(SettingError, match="DEMO_PAGE"):
        create_app(stack_env | {"DEMO_PAGE": "maybe"})


def test_page_is_html_under_a_csp_that_allows_only_its_own_files(demo_app):
    answer = demo_app.test_client().get("/")
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert answer.headers["Content-Security-Policy"] == DEMO_CSP
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Frame-Options"] == "DENY"
    html = answer.get_data(as_text=True)
    assert '<script src="/demo/demo.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/demo/demo.css">' in html


def test_page_loads_nothing_from_elsewhere_and_runs_no_inline_code(demo_app):
    html = demo_app.test_client().get("/").get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts and all(" src=" in tag for tag in scripts), "inline scripts break the CSP"
    assert not re.search(r"\son\w+=", html), "inline event handlers break the CSP"
    assert "style=" not in html, "inline styles break the CSP"
    links = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert links and all(link.startswith(("/", "#")) for link in links), links


@pytest.mark.parametrize(
    ("path", "mimetype", "marker"),
    [
        ("/demo/demo.js", "text/javascript", "POST /check_participation"),
        ("/demo/demo.css", "text/css", ".messages"),
    ],
)
def test_script_and_style_are_served_with_their_types(demo_app, path, mimetype, marker):
    answer = demo_app.test_client().get(path)
    assert answer.status_code == 200
    assert answer.mimetype == mimetype  # with nosniff, a wrong type would not run
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert marker in answer.get_data(as_text=True)


def test_missing_demo_file_is_the_json_404_with_the_api_headers(demo_app):
    answer = demo_app.test_client().get("/demo/nothing.js")
    assert answer.status_code == 404
    assert "error" in answer.get_json()
    assert answer.headers["Content-Security-Policy"] == JSON_CSP


def test_api_routes_keep_their_json_headers_with_the_page_on(demo_app, participant_id):
    answer = demo_app.test_client().post("/check_participation", json={"id": participant_id})
    assert answer.status_code == 204
    assert answer.headers["Content-Security-Policy"] == JSON_CSP
