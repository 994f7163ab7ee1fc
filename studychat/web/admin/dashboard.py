"""rq-dashboard, RQ's own web console, mounted at /admin/rq behind the admin guard.

admin_auth guards every path under /admin, so the dashboard's pages, data and buttons
(delete, requeue) need the admin token or the admin's session cookie like the rest.
Its jobs are ours: it reads them with our JSONSerializer.

Its pages run one inline script and compile underscore templates (which needs
'unsafe-eval'). A job's description holds the start of the participant's message and
the dashboard inserts it unescaped on the job page, so the pages' Content-Security-Policy
allows only scripts from this origin and the one inline script we sign with a nonce per
answer: markup smuggled into a message (`<img onerror=...>`) cannot run.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import validate_job_id

from studychat.chat.task_queue import SERIALIZER, tls_options
from studychat.settings import Settings
from studychat.web.errors import error_response
from studychat.web.services import services

URL_PREFIX = "/admin/rq"
# The one inline script of rq-dashboard's base.html; external ones carry src= first.
INLINE_SCRIPT = '<script type="text/javascript">'
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self' 'nonce-{nonce}' 'unsafe-eval';"
    " style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self';"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def dashboard_redis_url(url: str, ssl_cert_reqs: str) -> str:
    """REDIS_URL with REDIS_SSL_CERT_REQS in its query, as rq-dashboard opens its own client."""
    check = tls_options(url, ssl_cert_reqs).get("ssl_cert_reqs", "required")
    if check == "required":  # redis-py's own default
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("ssl_cert_reqs", check)
    return urlunsplit(parts._replace(query=urlencode(query)))


# What rq-dashboard's routes accept; anything else made it answer 500.
INSTANCE = 0
REGISTRIES = frozenset(
    {"queued", "failed", "deferred", "started", "finished", "scheduled", "canceled"}
)
ORDERS = frozenset({"asc", "dsc"})
NO_SUCH_JOB = "There is no job with this id."


def refuse_bad_arguments() -> ResponseReturnValue | None:
    """Answer a 404 or 400 naming what is wrong before rq-dashboard fails on it with a 500."""
    args = request.view_args or {}
    if args.get("instance_number", INSTANCE) != INSTANCE:
        return error_response(404, f"There is one Redis instance here, number {INSTANCE}.")
    if args.get("registry_name", "queued") not in REGISTRIES:
        return error_response(404, "There is no registry of that name.")
    if args.get("order", "asc") not in ORDERS:
        return error_response(400, "The order must be asc or dsc.")
    if not all(str(args.get(name, 1)).isdigit() for name in ("per_page", "page")):
        return error_response(400, "The page and the page size must be whole numbers.")
    if "job_id" in args and not _valid_job_id(args["job_id"]):
        return error_response(404, NO_SUCH_JOB)
    if "queue_name" in args:
        return _refuse_unknown_queue(args["queue_name"])
    return None


def _valid_job_id(job_id: str) -> bool:
    try:
        validate_job_id(job_id)
    except ValueError:
        return False
    return True


def _refuse_unknown_queue(name: str) -> ResponseReturnValue | None:
    """A 404 for a queue RQ does not know; compacting an empty one has nothing to do."""
    connection = services().redis
    queue = Queue(name, connection=connection, serializer=SERIALIZER)
    if not connection.sismember(Queue.redis_queues_keys, queue.key):
        return error_response(404, "There is no queue of that name.")
    if request.endpoint == f"{rq_dashboard.blueprint.name}.compact_queue" and not queue.count:
        return jsonify(status="OK")
    return None


def answer_no_such_job(_error: NoSuchJobError) -> ResponseReturnValue:
    """A job that vanished between the check and rq-dashboard's read: 404, not 500."""
    return error_response(404, NO_SUCH_JOB)


def sign_inline_script(response: Response) -> Response:
    """Give the page's inline script a fresh nonce and allow only it (and this origin)."""
    if response.mimetype != "text/html" or response.direct_passthrough:
        return response
    nonce = secrets.token_urlsafe(18)
    page = response.get_data(as_text=True)
    signed = f'<script type="text/javascript" nonce="{nonce}">'
    response.set_data(page.replace(INLINE_SCRIPT, signed))
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP.format(nonce=nonce)
    response.headers["Cache-Control"] = "no-store"
    return response


def mount_rq_dashboard(app: Flask, settings: Settings) -> None:
    """Serve rq-dashboard at URL_PREFIX on `app`, on the app's Redis, reading JSON jobs."""
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = dashboard_redis_url(
        settings.REDIS_URL, settings.REDIS_SSL_CERT_REQS
    )
    # The dashboard keeps its serializer in a module-wide setting; ours is the only one.
    rq_dashboard.web.config.serializer = SERIALIZER
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)
    # First of the dashboard's own hooks, which already fail on a bad instance number.
    app.before_request_funcs.setdefault(rq_dashboard.blueprint.name, []).insert(
        0, refuse_bad_arguments
    )
    app.register_error_handler(NoSuchJobError, answer_no_such_job)
    # Runs before the app's security headers, which then keep this CSP (they only fill gaps).
    app.after_request_funcs.setdefault(rq_dashboard.blueprint.name, []).append(sign_inline_script)
