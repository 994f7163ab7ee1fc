"""Where the checkout is, and the settings and environment of the processes tests start."""

from __future__ import annotations

import os
import uuid
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


EXAMPLE_STUDY = ROOT / "study.example.yaml"


def fresh_example_study(folder: Path) -> dict[str, str]:
    """Settings naming a copy of the example study under a new name (its own balance)."""
    path = folder / f"study-{uuid.uuid4().hex[:8]}.yaml"
    name = f"test-{uuid.uuid4().hex[:12]}"
    path.write_text(EXAMPLE_STUDY.read_text().replace("name: support-pilot", f"name: {name}"))
    return {"STUDY_FILE": str(path)}
