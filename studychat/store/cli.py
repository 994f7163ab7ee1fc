"""`flask --app app participants delete ID`: erase one participant on request."""

from __future__ import annotations

import getpass

import click
from flask.cli import AppGroup
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from studychat.store.erasure import erase_participant
from studychat.web.services import services

participants_command = AppGroup("participants", help="Act on one participant's data.")


@participants_command.command("delete")
@click.argument("participant_id")
def delete_command(participant_id: str) -> None:
    """Erase everything of PARTICIPANT_ID (record, session, transcripts, Redis); repeatable."""
    made = services()
    try:
        removed = erase_participant(made.db, made.redis, participant_id, f"cli:{getpass.getuser()}")
    except (PyMongoError, RedisError) as error:
        raise click.ClickException(
            f"The erasure could not finish ({type(error).__name__}): check that MongoDB and"
            " Redis are up, then run it again; running it twice does no harm."
        ) from None
    items = ", ".join(f"{count} {kind}" for kind, count in removed.items())
    click.echo(f"Erased {participant_id}: {items}.")
