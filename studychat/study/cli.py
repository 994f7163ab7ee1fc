"""`flask --app app study show|check`: what will run, for pre-registration, and a file check."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from studychat.exceptions import StudyFileError
from studychat.study.definition import Study, load_study
from studychat.web.services import services

study_command = AppGroup("study", help="The study file: show what will run, or check a file.")


@study_command.command("show")
def show_command() -> None:
    """Print the resolved study of STUDY_FILE as JSON, then its sha256."""
    study = services().study
    if study is None:
        raise click.ClickException("No study is configured: STUDY_FILE is not set.")
    click.echo(describe(study))


@study_command.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def check_command(path: Path) -> None:
    """Validate the study file PATH without starting anything; show what it resolves to."""
    try:
        study = load_study(path, services().settings)
    except StudyFileError as error:
        raise click.ClickException(str(error)) from None
    click.echo(describe(study))
    click.echo(f"{path} is valid: {len(study.conditions)} conditions.", err=True)


def describe(study: Study) -> str:
    """The resolved study as indented JSON, and the line with its hash."""
    document = json.dumps(study.document(), indent=2, ensure_ascii=False, sort_keys=True)
    return f"{document}\nsha256 {study.hash}"
