"""The web process as gunicorn.conf.py configures it: hundreds of open streams at once."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.servers import WebServer
from tests.support.chat_helpers import start_chats
from tests.support.stack import process_env

pytestmark = pytest.mark.timeout(180)

OPEN_STREAMS = 300


def open_stream(port: int, job_id: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", f"/stream/{job_id}")
    answer = connection.getresponse()
    assert answer.status == 200
    assert answer.readline() == b": connected\n"
    return answer


def last_event(answer: http.client.HTTPResponse) -> str:
    events = [line for line in answer.read().decode().splitlines() if line.startswith("event:")]
    return events[-1]


def test_hundreds_of_open_streams_leave_the_web_responsive(
    own_app, own_stack_env, start_worker, upstream, tmp_path
):
    job_ids = start_chats(own_app.test_client(), OPEN_STREAMS)
    web = WebServer(process_env(own_stack_env), directory=tmp_path)
    with web, ThreadPoolExecutor(max_workers=OPEN_STREAMS) as pool:
        streams = list(pool.map(lambda j: open_stream(web.port, j), job_ids))
        # Every stream is open and waiting; the web still answers at once.
        started = time.monotonic()
        probe = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
        body = json.dumps({"id": "P-x"})
        probe.request("POST", "/check_participation", body, {"Content-Type": "application/json"})
        assert probe.getresponse().status == 204
        assert time.monotonic() - started < 2
        start_worker(own_stack_env)
        endings = list(pool.map(last_event, streams))
    assert endings == ["event: done"] * OPEN_STREAMS
