"""Our gunicorn access logger: gunicorn's own line, without polls still processing."""

from __future__ import annotations

import http.client
import json
import logging
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from devtools.servers import WebServer
from studychat.logging_setup import ACCESS_FORMAT, ACCESS_LOGGER, JsonFormatter
from studychat.web.access_log import AccessLogger
from tests.support.polling import wait_for
from tests.support.stack import process_env

POLL_LINE = "POST /check_response 200"

ENVIRON = {
    "REQUEST_METHOD": "POST",
    "RAW_URI": "/check_response?participantId=P-secret",
    "PATH_INFO": "/check_response",
    "QUERY_STRING": "participantId=P-secret",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "203.0.113.9",
    "HTTP_USER_AGENT": "browser",
}


def access_line(logger_class: type[Logger]) -> dict:
    """The JSON access line `logger_class` makes of one answered poll."""
    response = SimpleNamespace(
        status="200 OK",
        sent=20,
        headers=[("Content-Type", "application/json"), ("X-Request-ID", "req-9")],
    )
    request = SimpleNamespace(headers=[("ORIGIN", "https://study.example")])
    atoms = logger_class(Config()).atoms(response, request, ENVIRON, timedelta(microseconds=1234))
    # As gunicorn logs it: access_log.info(format, SafeAtoms(atoms)).
    record = logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, ACCESS_FORMAT, (SafeAtoms(atoms),), None
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    del entry["time"]
    return entry


def test_the_lean_atoms_make_the_same_access_line_as_gunicorns():
    lean = access_line(AccessLogger)
    assert lean == access_line(Logger)
    assert lean["message"] == "POST /check_response 200"
    assert (lean["status"], lean["bytes"], lean["request_id"]) == (200, 20, "req-9")
    assert lean["duration_ms"] == 1.234


def post(connection: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict]:
    """POST JSON on a kept-alive connection, as a browser tab does; status and JSON answer."""
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read())


def access_lines(web: WebServer) -> list[str]:
    """The messages of the access lines the web has written so far."""
    entries = [json.loads(line) for line in web.log_text().splitlines() if line.startswith("{")]
    return [entry["message"] for entry in entries if entry.get("logger") == ACCESS_LOGGER]


def chat_and_poll(web: WebServer, polls: int) -> tuple[http.client.HTTPConnection, str]:
    """Start a chat turn and poll it `polls` times while no worker answers it."""
    connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    turn = {"messages": [{"role": "user", "content": "hello"}], "participantId": "P-log"}
    status, accepted = post(connection, "/chat", turn)
    assert status == 202
    for _ in range(polls):
        assert post(connection, "/check_response", accepted) == (200, {"processing": True})
    return connection, accepted["jobId"]


def test_polls_still_processing_leave_no_access_line_but_the_answer_does(
    own_stack_env, start_worker, upstream, tmp_path
):
    with WebServer(process_env(own_stack_env), directory=tmp_path) as web:
        # The first poll goes through Flask, the others the lean path (lean_polls).
        connection, job_id = chat_and_poll(web, polls=3)
        start_worker(own_stack_env)

        def answered():
            status, answer = post(connection, "/check_response", {"jobId": job_id})
            return status == 200 and "response" in answer

        wait_for(answered)
        lines = wait_for(lambda: POLL_LINE in access_lines(web) and access_lines(web))
    assert lines.count(POLL_LINE) == 1
    assert lines.count("POST /chat 202") == 1


def test_log_pending_polls_writes_a_line_for_every_poll(own_stack_env, upstream, tmp_path):
    settings = own_stack_env | {"LOG_PENDING_POLLS": "true"}
    with WebServer(process_env(settings), directory=tmp_path) as web:
        chat_and_poll(web, polls=3)
        wait_for(lambda: access_lines(web).count(POLL_LINE) == 3)
