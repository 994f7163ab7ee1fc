"""Tools from Debian rather than PyPI that some tests need (Chromium, promtool)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose tool is missing here, but fail it in CI, whose .ci/run installs it."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
