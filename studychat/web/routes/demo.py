"""The demo participant page: GET / and its static files under /demo/, when DEMO_PAGE is on.

A plain HTML and JavaScript client of this service (static/demo/), served from the same
origin so no CORS is involved. It is registered only when the DEMO_PAGE setting is true
(`make run` sets it); otherwise `/` answers the usual JSON 404, so a production
deployment never shows a demo page by accident.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response

from studychat import STATIC_DIR
from studychat.web.security_headers import html_headers
from studychat.web.services import services

logger = logging.getLogger(__name__)

DEMO_DIR = STATIC_DIR / "demo"
# Scripts and styles from this origin only (no inline code, no CDN); images also as data:
# URLs (the preview of an attached image); fetch and EventSource to this origin only.
DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("demo", __name__, static_folder=DEMO_DIR, static_url_path="/demo")


@bp.get("/")
def index() -> Response:
    """The page itself; it loads /demo/demo.js and /demo/demo.css."""
    return bp.send_static_file("index.html")


@bp.after_request
def page_headers(response: Response) -> Response:
    """The page's CSP and revalidated caching, kept by the app's JSON defaults (setdefault)."""
    if response.mimetype != "application/json":  # a JSON 404 keeps the API's strict headers
        response.headers.update(html_headers(DEMO_CSP))
    return response


def register_demo_page(app: Flask) -> None:
    """Serve the demo page on `app` when its DEMO_PAGE setting is true."""
    if services(app).settings.DEMO_PAGE:
        app.register_blueprint(bp)
        logger.info("demo participant page served at /")
