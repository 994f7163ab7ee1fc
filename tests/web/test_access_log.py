"""Our gunicorn access logger gives the access line exactly what gunicorn's own would."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger, SafeAtoms

from studychat.logging_setup import ACCESS_FORMAT, ACCESS_LOGGER, JsonFormatter
from studychat.web.access_log import AccessLogger

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
