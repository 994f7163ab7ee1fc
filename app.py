"""The Flask app: `create_app(config)` builds it; gunicorn serves `app:app`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_cors import CORS

import admin_page_routes
import admin_routes
import chat_routes
import export
import health_routes
import metrics_routes
import openapi
import stream_routes
import study_routes
from admin_auth import install_admin_guard
from demo_routes import register_demo_page
from errors import register_error_handlers
from logging_setup import configure_logging
from rate_limits import RATE_LIMIT_HEADERS, init_rate_limits, trust_proxies
from request_ids import install_request_ids
from request_metrics import install_request_metrics
from rq_dashboard_mount import mount_rq_dashboard
from security_headers import install_security_headers
from services import init_services
from settings import check_settings_or_exit, load_settings

logger = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with `config` overriding it (tests pass all)."""
    settings = load_settings({**os.environ, **(config or {})})
    app = Flask(__name__)
    app.config.from_mapping(settings)
    install_request_ids(app)  # first, so that every log line of a request carries its id
    install_request_metrics(app)
    made = init_services(app, settings)
    trust_proxies(app, settings["PROXY_FIX_X_FOR"])
    # A frontend on another origin may read when to retry after a 429.
    CORS(app, origins=settings["FRONTEND_URL"], expose_headers=RATE_LIMIT_HEADERS)
    register_error_handlers(app)
    install_security_headers(app)
    install_admin_guard(app)
    app.register_blueprint(chat_routes.bp)
    app.register_blueprint(study_routes.bp)
    app.register_blueprint(admin_routes.bp)
    app.register_blueprint(admin_page_routes.bp)
    mount_rq_dashboard(app, settings)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(openapi.bp)
    register_demo_page(app)  # GET / only where DEMO_PAGE is true
    init_rate_limits(app, settings, made.redis)
    app.register_blueprint(health_routes.bp)
    app.register_blueprint(stream_routes.bp)
    app.cli.add_command(export.export_command)
    return app


def _production_app() -> Flask:
    """The app gunicorn and `flask --app app` serve: settings from the environment and `.env`."""
    check_settings_or_exit()  # a missing setting is one clear line, not a traceback
    configure_logging()
    return create_app()


_app: Flask | None = None


def __getattr__(name: str) -> Flask:
    """Build `app` on first use, so importing this module (tests, tools) needs no settings."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = _production_app()
    return _app
