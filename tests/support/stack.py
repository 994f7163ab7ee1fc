"""Where the checkout is, and the settings and environment of the processes tests start."""

from __future__ import annotations

import os
from pathlib import Path

from studychat.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = "https://study.example.org"
PROLIFIC_CODE = "C0DE1234"


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a child process: this one's, minus any study setting, plus `settings`."""
    names = {setting.name for setting in SETTINGS}
    env = {key: value for key, value in os.environ.items() if key not in names}
    return {**env, **settings}
