"""JSON error answers: one helper, and handlers so that no failure answers HTML or a trace."""

from __future__ import annotations

import logging

import pymongo.errors
import redis.exceptions
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from studychat.exceptions import BadRequest, Refused

logger = logging.getLogger(__name__)

QUEUE_DOWN = "The job queue (Redis) is unavailable right now; please try again shortly."
DATABASE_DOWN = "The database is unavailable right now; please try again shortly."


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> tuple[Response, int, dict[str, str]]:
    """Answer `{"error": message}` with `status`."""
    return jsonify(error=message), status, headers or {}


def _http_message(error: HTTPException) -> str:
    """A sentence a frontend developer understands for a routing or protocol error."""
    if error.code == 404:
        return f"There is no route {request.path}; see the API in README."
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(set(error.valid_methods or []) - {"HEAD", "OPTIONS"}))
        return f"Method {request.method} is not allowed on {request.path}; use {allowed}."
    if error.code == 413:
        return "The request body is too large."
    if error.code == 400:
        return "The request body is not valid JSON."
    return error.name


def handle_http_exception(error: HTTPException):
    """Turn Werkzeug's HTML error pages into JSON, keeping the headers HTTP requires (Allow)."""
    headers = {name: value for name, value in error.get_headers() if name != "Content-Type"}
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(sorted(error.valid_methods))  # the same on every run
    return error_response(error.code or 500, _http_message(error), headers)


def handle_bad_request(error: BadRequest):
    """Answer 400 naming the offending field."""
    return error_response(400, error.message)


def handle_refused(error: Refused):
    """Answer the refusal's status and sentence (429s say when to try again: Retry-After)."""
    headers = {"Retry-After": str(error.retry_after)} if error.status == 429 else None
    return error_response(error.status, error.message, headers)


def handle_redis_down(error: redis.exceptions.RedisError):
    """Answer 503 when Redis cannot be reached."""
    logger.warning("redis unavailable: %s", type(error).__name__)
    return error_response(503, QUEUE_DOWN)


def handle_mongo_down(error: pymongo.errors.PyMongoError):
    """Answer 503 when MongoDB cannot be reached or fails."""
    logger.warning("mongodb unavailable: %s", type(error).__name__)
    return error_response(503, DATABASE_DOWN)


def handle_unexpected(error: Exception):
    """Log the fault and answer a 500 that leaks nothing internal."""
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "The server hit an internal error; the team has been told.")


def register_error_handlers(app: Flask) -> None:
    """Install the JSON error handlers on `app`."""
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(BadRequest, handle_bad_request)
    app.register_error_handler(Refused, handle_refused)
    app.register_error_handler(redis.exceptions.ConnectionError, handle_redis_down)
    app.register_error_handler(redis.exceptions.TimeoutError, handle_redis_down)
    app.register_error_handler(redis.exceptions.BusyLoadingError, handle_redis_down)
    app.register_error_handler(pymongo.errors.PyMongoError, handle_mongo_down)
    app.register_error_handler(Exception, handle_unexpected)
