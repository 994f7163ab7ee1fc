"""The app factory: `create_app(config)` builds the Flask app (gunicorn serves `app:app`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_cors import CORS

from studychat.export import cli as export_cli
from studychat.settings import Settings, load_settings
from studychat.store import cli as store_cli
from studychat.study import cli as study_cli
from studychat.web import openapi
from studychat.web.admin import pages as admin_pages
from studychat.web.admin import routes as admin_routes
from studychat.web.admin.auth import install_admin_guard
from studychat.web.admin.dashboard import mount_rq_dashboard
from studychat.web.errors import register_error_handlers
from studychat.web.lean_polls import install_lean_polls
from studychat.web.rate_limits import RATE_LIMIT_HEADERS, init_rate_limits, trust_proxies
from studychat.web.request_ids import install_request_ids
from studychat.web.request_metrics import install_request_metrics
from studychat.web.routes import chat, health, metrics, records, sessions, stream
from studychat.web.routes.demo import register_demo_page
from studychat.web.security_headers import install_security_headers
from studychat.web.services import init_services


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Build the app from `config`: settings, or overrides of the environment (tests)."""
    settings = config if isinstance(config, Settings) else load_settings(config)
    app = Flask("studychat")  # its templates and static files are in the package
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_CONTENT_LENGTH  # Flask's own setting
    install_request_ids(app)  # first, so that every log line of a request carries its id
    install_request_metrics(app)
    made = init_services(app, settings)
    trust_proxies(app, settings.PROXY_FIX_X_FOR)
    install_lean_polls(app, made.redis, made.job_updates)
    # A frontend on another origin may read when to retry after a 429.
    CORS(app, origins=settings.FRONTEND_URL, expose_headers=RATE_LIMIT_HEADERS)
    register_error_handlers(app)
    install_security_headers(app)
    install_admin_guard(app, settings.ADMIN_TOKEN)
    app.register_blueprint(chat.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(admin_routes.bp)
    app.register_blueprint(admin_pages.bp)
    mount_rq_dashboard(app, settings)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openapi.bp)
    register_demo_page(app)  # GET / only where DEMO_PAGE is true
    init_rate_limits(app, settings, made.redis)
    app.register_blueprint(health.bp)
    app.register_blueprint(stream.bp)
    app.cli.add_command(export_cli.export_command)
    app.cli.add_command(study_cli.study_command)
    app.cli.add_command(store_cli.participants_command)
    return app
