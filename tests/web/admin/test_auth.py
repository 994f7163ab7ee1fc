"""The admin guard: every page under /admin needs the bearer token; off without one."""

from __future__ import annotations

import pytest
from flask import Blueprint, jsonify

from studychat.exceptions import SettingError
from studychat.factory import create_app
from studychat.web.admin.auth import bearer_token, is_admin_path, token_matches
from studychat.web.services import close_services

TOKEN = "admin-token-for-tests-0123456789"


@pytest.fixture()
def make_app(stack_env):
    made = []

    def build(token: str = TOKEN):
        app = create_app(stack_env | {"ADMIN_TOKEN": token})
        # A later admin page (rq-dashboard, exports...) mounted under /admin by another module.
        later = Blueprint("later_admin", __name__, url_prefix="/admin/later")
        later.add_url_rule("/page", view_func=lambda: jsonify(secret="admin data"))
        app.register_blueprint(later)
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


@pytest.mark.parametrize("path", ["/admin/budget", "/admin/later/page", "/admin/nothing", "/admin"])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_without_the_token_every_admin_page_is_401(make_app, path, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = make_app().test_client().get(path, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json() == {
        "error": "This admin page needs the header Authorization: Bearer <ADMIN_TOKEN>."
    }
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="admin"'
    assert "admin data" not in answer.get_data(as_text=True)


def test_with_the_token_admin_pages_answer(make_app):
    client = make_app().test_client()
    for scheme in ("Bearer", "bearer"):
        answer = client.get("/admin/later/page", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert answer.status_code == 200
        assert answer.get_json() == {"secret": "admin data"}
    missing = client.get("/admin/nothing", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 404


@pytest.mark.parametrize("path", ["/admin/budget", "/admin/later/page", "/admin"])
def test_without_a_configured_token_the_admin_surface_is_off(make_app, path):
    answer = make_app(token="").test_client().get(path, headers={"Authorization": "Bearer "})
    assert answer.status_code == 404
    assert answer.get_json()["error"] == f"There is no route {path}; see the API in README."


def test_other_routes_need_no_token(make_app, participant_id):
    client = make_app().test_client()
    assert client.post("/check_participation", json={"id": participant_id}).status_code == 204
    assert client.get("/openapi.json").status_code == 200


def test_short_admin_tokens_are_refused_at_start(stack_env):
    with pytest.raises(SettingError, match="ADMIN_TOKEN") as raised:
        create_app(stack_env | {"ADMIN_TOKEN": "secret"})
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearer", None),
        ("Basic abc", None),
        (None, None),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


def test_token_matches_only_the_exact_token():
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN[:-1], TOKEN)
    assert not token_matches(None, TOKEN)
    assert not token_matches("é" + TOKEN, TOKEN)


def test_admin_paths():
    assert is_admin_path("/admin")
    assert is_admin_path("/admin/rq/queues")
    assert not is_admin_path("/administrator")
    assert not is_admin_path("/chat")
