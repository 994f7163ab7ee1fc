"""The settings table: required settings, parsing, and .env.example kept in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from studychat.exceptions import MissingSettings, SettingError
from studychat.settings import SETTINGS, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
REQUIRED = [s.name for s in SETTINGS if s.required]


def complete_source() -> dict[str, str]:
    return {name: "x" for name in REQUIRED} | {
        "FRONTEND_URL": "https://a.org, https://b.org",
        "STUDY_TOKEN_BUDGET": "none",
    }


def test_missing_settings_are_all_named():
    with pytest.raises(MissingSettings) as raised:
        load_settings({"GPT_VERSION": "gpt-4o", "OPENAI_API_KEY": "  "})
    missing = set(REQUIRED) - {"GPT_VERSION"}
    assert set(raised.value.names) == missing
    for name in missing:
        assert name in str(raised.value)


def test_defaults_and_parsing():
    settings = load_settings(complete_source())
    assert settings.FRONTEND_URL == ["https://a.org", "https://b.org"]
    assert settings.GPT_TOKEN_LIMIT == 1000
    assert settings.RESULT_TTL_S == 86400
    assert settings.DATABASE_NAME == "study"


def test_invalid_number_names_the_setting_not_the_value():
    with pytest.raises(SettingError, match="GPT_TOKEN_LIMIT") as raised:
        load_settings(complete_source() | {"GPT_TOKEN_LIMIT": "lots"})
    assert "lots" not in str(raised.value)


def test_prolific_url_defaults_to_prolifics_completion_page():
    settings = load_settings(complete_source() | {"PROLIFIC_CODE": "ABC"})
    assert settings.completion_url == "https://app.prolific.com/submissions/complete?cc=ABC"
    custom = load_settings(complete_source() | {"PROLIFIC_URL": "https://example.org/done"})
    assert custom.completion_url == "https://example.org/done"


def test_a_secret_never_shows_in_the_settings_repr():
    settings = load_settings(complete_source() | {"OPENAI_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(settings)
    assert "GPT_TOKEN_LIMIT=1000" in repr(settings)


def test_text_from_the_environment_is_parsed_like_the_old_table(monkeypatch):
    monkeypatch.setenv("PARTICIPANT_TOKEN_BUDGET", "")
    monkeypatch.setenv("DEMO_PAGE", "Yes")
    monkeypatch.setenv("LEGACY_API", "")
    monkeypatch.setenv("REDIS_SSL_CERT_REQS", "NONE")
    settings = load_settings(
        {k: v for k, v in complete_source().items() if k != "STUDY_TOKEN_BUDGET"}
        | {"STUDY_TOKEN_BUDGET": "NONE"}
    )
    assert (settings.PARTICIPANT_TOKEN_BUDGET, settings.STUDY_TOKEN_BUDGET) == (None, None)
    assert (settings.DEMO_PAGE, settings.LEGACY_API) == (True, True)
    assert settings.REDIS_SSL_CERT_REQS == "none"
    with pytest.raises(SettingError, match="CHAT_RATE_LIMIT"):
        load_settings(complete_source() | {"CHAT_RATE_LIMIT": "often"})
    with pytest.raises(SettingError, match="ADMIN_TOKEN"):
        load_settings(complete_source() | {"ADMIN_TOKEN": "short"})


def test_the_study_budget_must_be_stated_a_number_or_none():
    """Running on the team's key uncapped is a decision: a blank budget refuses to start."""
    with pytest.raises(MissingSettings) as raised:
        load_settings(complete_source() | {"STUDY_TOKEN_BUDGET": " "})
    assert raised.value.names == ["STUDY_TOKEN_BUDGET"]
    assert (
        load_settings(complete_source() | {"STUDY_TOKEN_BUDGET": "5000"}).STUDY_TOKEN_BUDGET == 5000
    )
    with pytest.raises(SettingError, match="STUDY_TOKEN_BUDGET"):
        load_settings(complete_source() | {"STUDY_TOKEN_BUDGET": "unlimited"})


def test_env_example_documents_every_setting():
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert documented == {setting.name for setting in SETTINGS}
