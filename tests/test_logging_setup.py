"""JSON log lines: the formatter, the request and job ids, and real web and worker logs."""

from __future__ import annotations

import http.client
import json
import logging
import sys
import uuid
from pathlib import Path

import pytest
from flask import Flask

from devtools.servers import WebServer
from studychat.logging_setup import ACCESS_FORMAT, ContextFilter, JsonFormatter, gunicorn_logconfig
from tests.support.polling import wait_for
from tests.support.stack import process_env

pytestmark = pytest.mark.timeout(120)

FIELDS = {"time", "level", "logger", "message", "request_id", "job_id"}


def formatted(record: logging.LogRecord) -> dict:
    ContextFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def make_record(name: str = "study", msg: str = "hello %s", args: object = ("world",), **extra):
    record = logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_object_with_the_named_fields():
    entry = formatted(make_record())
    assert set(entry) >= FIELDS
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "study"
    assert entry["message"] == "hello world"
    assert entry["time"].endswith("+00:00")
    assert entry["request_id"] is None
    assert entry["job_id"] is None


def test_a_traceback_travels_in_one_field_on_one_line():
    try:
        raise ValueError("bad value\non two lines")
    except ValueError:
        record = make_record(msg="failed", args=())
        record.exc_info = sys.exc_info()
    entry = formatted(record)
    assert entry["message"] == "failed"
    assert entry["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad value\non two lines" in entry["exc_info"]


def test_extra_fields_are_kept():
    entry = formatted(make_record(participants=3, worker="w-1"))
    assert (entry["participants"], entry["worker"]) == (3, "w-1")


def test_a_gunicorn_access_line_has_method_path_status_time_and_request_id():
    atoms = {
        "m": "POST",
        "U": "/chat",
        "q": "participantId=P-secret",
        "h": "203.0.113.9",
        "s": "202",
        "D": 12345,
        "B": 49,
        "{x-request-id}o": "req-7",
    }
    entry = formatted(make_record("gunicorn.access", ACCESS_FORMAT, atoms))
    assert entry["message"] == "POST /chat 202"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/chat", 202)
    assert (entry["duration_ms"], entry["bytes"], entry["request_id"]) == (12.345, 49, "req-7")
    line = json.dumps(entry)
    assert "P-secret" not in line
    assert "203.0.113.9" not in line


def test_lines_logged_while_serving_a_request_carry_its_id(app: Flask):
    @app.get("/logs-something")
    def logs_something():
        logging.getLogger("study").warning("inside")
        return "", 204

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.addFilter(ContextFilter())
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("study").addHandler(handler)
    try:
        app.test_client().get("/logs-something", headers={"X-Request-ID": "req-inside"})
    finally:
        logging.getLogger("study").removeHandler(handler)
    assert [record.request_id for record in records] == ["req-inside"]


def test_gunicorn_logs_go_through_the_json_handler():
    config = gunicorn_logconfig("debug")
    assert config["root"] == {"level": "DEBUG", "handlers": ["json"]}
    for name in ("gunicorn.error", "gunicorn.access"):
        assert config["loggers"][name]["handlers"] == []
        assert config["loggers"][name]["propagate"] is True


def json_lines(path: Path) -> list[dict]:
    """Every line of a log file, each parsed as JSON (a line that is not JSON fails)."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines, f"{path} is empty"
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert set(entry) >= FIELDS, line
        entries.append(entry)
    return entries


def post(port: int, path: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"{}")
    finally:
        connection.close()


def test_web_and_worker_write_only_json_lines_with_request_and_job_ids(
    own_stack_env, start_worker, upstream, tmp_path
):
    marker = "private-" + uuid.uuid4().hex  # in the participant's message only
    worker = start_worker(own_stack_env)
    with WebServer(process_env(own_stack_env), directory=tmp_path / "web") as web:
        body = {"messages": [{"role": "user", "content": marker}], "participantId": "P-log"}
        status, headers, answer = post(web.port, "/chat", body, {"X-Request-ID": "req-chat-1"})
        assert (status, headers["X-Request-ID"]) == (202, "req-chat-1")
        job_id = answer["jobId"]

        def answered():
            reply = post(web.port, "/check_response", {"jobId": job_id}, {})
            return reply if reply[2] != {"processing": True} else None

        assert wait_for(answered, timeout=30)[0] == 200
        forged = post(web.port, "/check_participation", {"id": "P-x"}, {"X-Request-ID": "a b"})
        assert forged[1]["X-Request-ID"] != "a b"
    worker.stop()

    web_entries = json_lines(web.log_path)
    chat_line = next(e for e in web_entries if e.get("path") == "/chat")
    assert chat_line["logger"] == "gunicorn.access"
    assert (chat_line["request_id"], chat_line["status"]) == ("req-chat-1", 202)
    assert {e["logger"] for e in web_entries} >= {"gunicorn.error", "gunicorn.access"}

    worker_entries = json_lines(worker.log_path)
    job_lines = [e for e in worker_entries if e["job_id"] == job_id]
    assert job_lines, "no worker line names the job"
    assert any(e["logger"] == "rq.worker" for e in worker_entries)
    # Neither log quotes what the participant wrote.
    assert marker not in web.log_path.read_text()
    assert marker not in worker.log_path.read_text()
