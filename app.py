"""The web entry point: gunicorn serves `app:app`, and `flask --app app` runs its commands.

The app is built on first use, so importing this module (tests, tools) needs no settings.
"""

from __future__ import annotations

from flask import Flask

from studychat.factory import create_app
from studychat.logging_setup import configure_logging
from studychat.startup import check_or_exit

__all__ = ["create_app"]

_app: Flask | None = None


def _production_app() -> Flask:
    """The app with settings from the environment and `.env`, or a one-line refusal."""
    settings = check_or_exit()  # a missing setting is one clear line, not a traceback
    configure_logging(settings.LOG_LEVEL)
    return create_app(settings)


def __getattr__(name: str) -> Flask:
    """Build `app` on first use."""
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = _production_app()
    return _app
