"""The study file: validation that names the field and line, resolution, and the hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from studychat.exceptions import StudyFileError
from studychat.settings import load_settings
from studychat.study.definition import load_study
from tests.support.stack import ROOT

EXAMPLE = ROOT / "study.example.yaml"
REQUIRED = {
    "OPENAI_API_KEY": "k",
    "GPT_VERSION": "gpt-from-settings",
    "GPT_TOKEN_LIMIT": "321",
    "FRONTEND_URL": "https://a.org",
    "DATABASE_URL": "mongodb://x",
    "REDIS_URL": "redis://x",
    "PROLIFIC_CODE": "SETTINGSCODE",
    "STUDY_TOKEN_BUDGET": "none",
}
SETTINGS = load_settings(REQUIRED)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_the_example_file_loads_with_every_condition_resolved():
    study = load_study(EXAMPLE, SETTINGS)
    assert study.name == "support-pilot"
    assert study.weights == {"empathic": 1, "neutral": 1}
    empathic, neutral = study.conditions["empathic"], study.conditions["neutral"]
    assert (empathic.temperature, neutral.temperature) == (0.9, 0.7)  # override, default
    assert empathic.model == neutral.model == "gpt-4o-mini"
    assert empathic.max_tokens == 400
    assert empathic.client == {"avatar": "robot"}
    assert empathic.opening_message == "Hi! How has your week been?"


def test_what_the_file_leaves_out_comes_from_the_settings(tmp_path):
    path = write(tmp_path, "name: s\nconditions:\n  a:\n    system_prompt: Be brief.\n")
    condition = load_study(path, SETTINGS).conditions["a"]
    assert (condition.model, condition.max_tokens) == ("gpt-from-settings", 321)
    assert condition.completion_code == "SETTINGSCODE"
    assert condition.completion_url.endswith("cc=SETTINGSCODE")
    assert condition.model_options() == {}


def test_a_condition_code_makes_its_own_completion_url(tmp_path):
    text = "name: s\ncompletion_code: STUDY1\nconditions:\n  a:\n    system_prompt: x\n"
    text += "    completion_code: COND9\n  b:\n    system_prompt: y\n"
    study = load_study(write(tmp_path, text), SETTINGS)
    assert study.conditions["a"].completion_url.endswith("cc=COND9")
    assert study.conditions["b"].completion_code == "STUDY1"


def test_an_invalid_value_names_the_field_and_its_line(tmp_path):
    text = EXAMPLE.read_text().replace("    temperature: 0.9", "    temperature: 9")
    with pytest.raises(StudyFileError) as raised:
        load_study(write(tmp_path, text), SETTINGS)
    line = text.splitlines().index("    temperature: 9") + 1
    assert f"field conditions.empathic.temperature (line {line})" in str(raised.value)


def test_a_misspelt_field_is_refused_not_ignored(tmp_path):
    text = EXAMPLE.read_text().replace('opening_message: "Hello', 'opening_mesage: "Hello')
    with pytest.raises(
        StudyFileError, match=r"conditions.neutral.opening_mesage .*not a known field"
    ):
        load_study(write(tmp_path, text), SETTINGS)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("name: s\nconditions: {}\n", "conditions"),
        ("name: s\nconditions:\n  a: {weight: 1}\n", "conditions.a.system_prompt is required"),
        ("name: s\nconditions:\n  a: {weight: 0, system_prompt: x}\n", "weight above 0"),
        ("name: [\n", "not valid YAML"),
        ("- a list\n", "must be a mapping"),
    ],
)
def test_other_mistakes_are_one_clear_sentence(tmp_path, text, complaint):
    with pytest.raises(StudyFileError, match=complaint):
        load_study(write(tmp_path, text), SETTINGS)


def test_the_hash_changes_with_what_runs_and_only_with_it(tmp_path):
    base = load_study(EXAMPLE, SETTINGS).hash
    assert base == load_study(EXAMPLE, SETTINGS).hash
    reworded = EXAMPLE.read_text().replace("keep answers short", "keep answers brief")
    assert load_study(write(tmp_path, reworded), SETTINGS).hash != base
    commented = EXAMPLE.read_text() + "# a comment changes nothing that runs\n"
    assert load_study(write(tmp_path, commented), SETTINGS).hash == base
    other_model = load_settings(REQUIRED | {"GPT_VERSION": "other"})
    bare = "name: s\nconditions:\n  a:\n    system_prompt: x\n"
    path = write(tmp_path, bare)
    assert load_study(path, SETTINGS).hash != load_study(path, other_model).hash
