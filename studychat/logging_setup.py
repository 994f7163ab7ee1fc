"""Logging of web and worker processes: one JSON object per line.

Every line carries time, level, logger, message, the web request's id (request_ids.py)
and the chat job's id (inside a job), so the lines of one request or one job can be
found with a single filter in any log service. An exception's traceback travels in
`exc_info` as one string, so it never spreads over several lines. gunicorn's own error
and access logs are routed through the same formatter (`gunicorn_logconfig`), and so are
RQ's loggers, which add no handler of their own once the root logger has one.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_CONTEXT = {"request_id", "job_id"}
ACCESS_LOGGER = "gunicorn.access"
# What gunicorn's access line reports (its atoms); never the query string, the body or
# the client's address.
ACCESS_FORMAT = "%(m)s %(U)s %(s)s"


def _nothing() -> str | None:
    return None


# Who says the id of the current request and of the current job. This module stays
# stdlib-only, so that gunicorn's master can load it without Flask or RQ: the web
# (request_ids) and the worker (worker.main) register their own when they start.
CONTEXT_SOURCES: dict[str, Callable[[], str | None]] = {"request_id": _nothing, "job_id": _nothing}


def set_context_source(field: str, source: Callable[[], str | None]) -> None:
    """Let `source` say the `field` (request_id or job_id) of every log line from now on."""
    if field not in CONTEXT_SOURCES:
        raise ValueError(f"unknown log context {field!r}")
    CONTEXT_SOURCES[field] = source


class ContextFilter(logging.Filter):
    """Put the current request id and job id on each record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add `request_id` and `job_id` (None outside a request or a job); keep the record."""
        for field, source in CONTEXT_SOURCES.items():
            if getattr(record, field, None) is None:
                setattr(record, field, source())
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object on one line."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            entry.update(access_fields(record.args))
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a gunicorn access line, from its atoms (request line, status, time)."""
    request_id = atoms.get("{x-request-id}o")
    return {
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": _int_or_none(atoms.get("s")),
        "duration_ms": round(atoms.get("D", 0) / 1000, 3),
        "bytes": atoms.get("B"),
        "request_id": request_id if request_id not in (None, "-") else None,
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a caller passed with `extra=`, minus the context fields already named."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and key not in _CONTEXT
    }


def make_handler() -> logging.Handler:
    """A stderr handler that writes JSON lines with the request and job ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(level: str = "INFO") -> None:
    """Send every log line to stderr as JSON at LOG_LEVEL, replacing earlier handlers."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(make_handler())
    root.setLevel(level.upper())
    # The HTTP client logs every model call at INFO; the job's own line says enough.
    logging.getLogger("httpx2").setLevel(max(root.level, logging.WARNING))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    """Log an exception nothing caught as one JSON line instead of a bare traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logger.critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    thread = args.thread.name if args.thread else "?"
    logger.critical("uncaught exception in thread %s", thread, exc_info=exc_info)  # type: ignore[arg-type]


def gunicorn_logconfig(level: str = "INFO") -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs as JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {
            # No handlers of their own: their lines reach the root's JSON handler.
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            ACCESS_LOGGER: {"level": "INFO", "handlers": [], "propagate": True},
        },
    }
