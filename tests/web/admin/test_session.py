"""The admin's session cookie: signed by the token, short-lived, and a browser-only key."""

from __future__ import annotations

import time
from collections.abc import Iterator

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


def test_a_session_is_valid_only_for_the_token_that_signed_it():
    value = admin_session.new_cookie_value(TOKEN)
    assert admin_session.is_valid(value, TOKEN)
    assert not admin_session.is_valid(value, OTHER_TOKEN)
    assert TOKEN not in value


@pytest.mark.parametrize("value", [None, "", "admin", "admin.x.y", "YWRtaW4.AAAA.AAAA"])
def test_forged_values_are_refused(value):
    assert not admin_session.is_valid(value, TOKEN)


def test_a_tampered_session_is_refused():
    value = admin_session.new_cookie_value(TOKEN)
    assert not admin_session.is_valid("root" + value[5:], TOKEN)
    assert not admin_session.is_valid(value[:-2] + ("AA" if value[-2:] != "AA" else "BB"), TOKEN)


def test_a_session_ends_after_its_hours(monkeypatch):
    long_ago = int(time.time()) - admin_session.SESSION_SECONDS - 5
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: long_ago)
    value = admin_session.new_cookie_value(TOKEN)
    monkeypatch.undo()
    assert not admin_session.is_valid(value, TOKEN)


def login(app: Flask, **headers: str):
    client = app.test_client()
    answer = client.post("/admin/login", json={"token": TOKEN}, headers=headers)
    assert answer.status_code == 204
    return client, answer.headers["Set-Cookie"]


def test_the_cookie_is_httponly_strict_and_sent_to_admin_paths_only(make_app):
    _, cookie = login(make_app())
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0].startswith("admin_session=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=43200"} <= set(parts)
    assert "Secure" not in parts  # plain HTTP (local runs): a browser would drop it


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
