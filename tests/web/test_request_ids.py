"""Request ids: Heroku's X-Request-ID kept, or one made, and sent back on every answer."""

from __future__ import annotations

import re

import pytest

from studychat.web.request_ids import request_id_from

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "header", ["5d6a7f1e-8a0b-4c1d-9e2f-3a4b5c6d7e8f", "req-42", "a" * 200, "x.y:z/1+2="]
)
def test_a_plain_token_from_the_proxy_is_kept(header):
    assert request_id_from(header) == header


@pytest.mark.parametrize(
    "header", [None, "", "a" * 201, "two words", 'quote"d', "line\nbreak", "ünïcode"]
)
def test_anything_else_is_replaced_by_a_new_id(header):
    assert NEW_ID.fullmatch(request_id_from(header))


def test_every_answer_carries_the_request_id(client):
    answer = client.post(
        "/check_participation", json={"id": "P-x"}, headers={"X-Request-ID": "r-1"}
    )
    assert answer.headers["X-Request-ID"] == "r-1"
    missing = client.get("/no/such/route", headers={"X-Request-ID": "r-2"})
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"] == "r-2"


def test_requests_without_one_get_a_new_id_each(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert NEW_ID.fullmatch(first)
    assert NEW_ID.fullmatch(second)
    assert first != second


def test_a_forged_id_is_not_echoed(client):
    answer = client.get("/healthz", headers={"X-Request-ID": "evil\tinjected log text"})
    assert NEW_ID.fullmatch(answer.headers["X-Request-ID"])
