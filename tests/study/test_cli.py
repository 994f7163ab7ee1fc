"""`flask study show` and `flask study check`: what will run, and a file checked alone."""

from __future__ import annotations

import json

import pytest

from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.stack import ROOT

EXAMPLE = ROOT / "study.example.yaml"


@pytest.fixture()
def make_app(stack_env):
    made = []

    def build(**settings):
        app = create_app(stack_env | settings)
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


def test_show_prints_the_resolved_study_and_its_hash(make_app):
    app = make_app(STUDY_FILE=str(EXAMPLE))
    result = app.test_cli_runner().invoke(args=["study", "show"])
    assert result.exit_code == 0, result.output
    document, _, hash_line = result.output.rstrip("\n").rpartition("\n")
    shown = json.loads(document)
    assert shown["conditions"]["neutral"]["temperature"] == 0.7  # the study's default, resolved
    assert shown["conditions"]["empathic"]["completion_code"] == "C0DE1234"  # from the settings
    from studychat.web.services import services

    assert hash_line == f"sha256 {services(app).study.hash}"


def test_show_without_a_study_says_so(make_app):
    result = make_app().test_cli_runner().invoke(args=["study", "show"])
    assert result.exit_code != 0
    assert "STUDY_FILE is not set" in result.output


def test_check_validates_a_file_without_a_study_configured(make_app, tmp_path):
    app = make_app()
    good = app.test_cli_runner().invoke(args=["study", "check", str(EXAMPLE)])
    assert good.exit_code == 0, good.output
    assert "is valid: 2 conditions" in good.output and "sha256 " in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("weight: 1", "weight: heavy", 1))
    refused = app.test_cli_runner().invoke(args=["study", "check", str(bad)])
    assert refused.exit_code != 0
    assert "field conditions.empathic.weight (line 13)" in refused.output
