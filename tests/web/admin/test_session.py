"""The admin's session cookie: signed by the token, short-lived, and a browser-only key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
from flask import Flask
from itsdangerous import TimestampSigner

from studychat.factory import create_app
from studychat.web.admin import session as admin_session
from studychat.web.services import close_services

TOKEN = "admin-token-for-sessions-0123456789"
OTHER_TOKEN = "another-admin-token-0123456789-abc"


@pytest.fixture()
def make_app(stack_env) -> Iterator:
    made: list[Flask] = []

    def build(token: str = TOKEN) -> Flask:
        app = create_app(stack_env | {"ADMIN_TOKEN": token})
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


def login(app: Flask, **headers: str):
    client = app.test_client()
    answer = client.post("/admin/login", json={"token": TOKEN}, headers=headers)
    assert answer.status_code == 204
    return client, answer.headers["Set-Cookie"]


def session_value(client) -> str:
    return client.get_cookie("admin_session", path="/admin").value


def with_cookie(app: Flask, value: str):
    client = app.test_client()
    client.set_cookie("admin_session", value, path="/admin")
    return client


def test_a_session_is_valid_only_for_the_token_that_signed_it(make_app):
    app = make_app()
    client, _ = login(app)
    value = session_value(client)
    assert with_cookie(app, value).get("/admin/budget").status_code == 200
    assert with_cookie(make_app(OTHER_TOKEN), value).get("/admin/budget").status_code == 401
    assert TOKEN not in value


@pytest.mark.parametrize(
    "value", ["", "admin", "admin.x.y", "YWRtaW4.AAAA.AAAA", "eyJhZG1pbiI6dHJ1ZX0"]
)
def test_forged_values_are_refused(make_app, value):
    assert with_cookie(make_app(), value).get("/admin/budget").status_code == 401


def test_a_tampered_session_is_refused(make_app):
    app = make_app()
    client, _ = login(app)
    value = session_value(client)
    first = "X" if value[0] != "X" else "Y"
    assert with_cookie(app, first + value[1:]).get("/admin/budget").status_code == 401
    tampered = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
    assert with_cookie(app, tampered).get("/admin/budget").status_code == 401


def test_a_session_ends_after_its_hours(make_app, monkeypatch):
    app = make_app()
    long_ago = int(time.time()) - admin_session.SESSION_SECONDS - 5
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
    client, _ = login(app)
    monkeypatch.undo()
    assert client.get("/admin/budget").status_code == 401


def test_the_cookie_is_httponly_strict_and_sent_to_admin_paths_only(make_app):
    _, cookie = login(make_app())
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0].startswith("admin_session=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/admin"} <= set(parts)
    assert "Secure" not in parts  # plain HTTP (local runs): a browser would drop it
    # The browser keeps it for the session's 12 hours.
    expires = next(part for part in parts if part.startswith("Expires="))
    lifetime = parsedate_to_datetime(expires.removeprefix("Expires=")).timestamp() - time.time()
    assert abs(lifetime - admin_session.SESSION_SECONDS) < 60


def test_the_cookie_is_secure_behind_an_https_proxy(make_app):
    _, cookie = login(make_app(), **{"X-Forwarded-Proto": "https"})
    assert "Secure" in [part.strip() for part in cookie.split(";")]


def test_the_cookie_opens_every_admin_page_and_a_new_token_closes_them(make_app):
    client, _ = login(make_app())
    assert client.get("/admin/budget").status_code == 200
    assert client.get("/admin/api/stats").status_code == 200
    assert client.get("/admin/rq/").status_code == 200
    # The same cookie after ADMIN_TOKEN changed (a new deployment): refused.
    rotated = make_app(OTHER_TOKEN).test_client()
    value = client.get_cookie("admin_session", path="/admin").value
    rotated.set_cookie("admin_session", value, path="/admin")
    assert rotated.get("/admin/budget").status_code == 401


def test_logging_out_ends_the_session(make_app):
    client, _ = login(make_app())
    answer = client.post("/admin/logout")
    assert answer.status_code == 204
    assert "admin_session=;" in answer.headers["Set-Cookie"]
    assert client.get("/admin/budget").status_code == 401
