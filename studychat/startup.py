"""The check every server process makes before it starts: settings and study file."""

from __future__ import annotations

import sys

from studychat.exceptions import MissingSettings, SettingError, StudyFileError
from studychat.settings import Settings, load_dotenv_file, load_settings
from studychat.study.definition import load_configured_study


def check_or_exit() -> Settings:
    """The settings, once they and the study file validate; else one line, and exit 1.

    Called before a server process forks, so a mistake is one clear sentence naming every
    missing setting, or the study file's field and line, never a traceback per process.
    """
    load_dotenv_file()
    try:
        settings = load_settings()
        load_configured_study(settings)
    except (MissingSettings, SettingError, StudyFileError) as error:
        print(f"Refusing to start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    return settings
