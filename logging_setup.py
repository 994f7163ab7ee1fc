"""Logging of web and worker processes."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    """Send log lines to stderr at LOG_LEVEL."""
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL") or "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
