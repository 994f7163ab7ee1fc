"""`flask --app app export COLLECTION`: the study's data as JSON lines or CSV, streamed.

Documents are read from a cursor in batches and written one by one, so memory stays
flat however large the collection is. `jsonl` is byte for byte what `mongoexport`
writes, once parsed (see jsonl); `csv` gives tidy tables for pandas and R (see csv_rows).
With `--out`, a file is written beside its target and renamed into place when
complete, so a failed export never leaves a truncated file that looks finished.
A progress bar is drawn on stderr when stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click
from flask.cli import with_appcontext
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from studychat.export.csv_rows import (
    CHAT_LOG_COLUMNS,
    MESSAGE_COLUMNS,
    PARTICIPANT_COLUMNS,
    TURN_COLUMNS,
    chat_log_row,
    flatten_tasks,
    legacy_turn_rows,
    message_rows,
    participant_row,
    session_turn_rows,
    tasks_path,
)
from studychat.export.jsonl import CODEC_OPTIONS, json_line
from studychat.store.database import CHAT_LOG_COLLECTION, DATA_COLLECTION, SESSIONS_COLLECTION
from studychat.web.services import services

TURNS = "turns"
# The collections, and the derived table of turns (one row per message, CSV only).
COLLECTIONS = (DATA_COLLECTION, CHAT_LOG_COLLECTION, SESSIONS_COLLECTION, TURNS)
# Documents per cursor batch: bounds memory (a record with images can be megabytes).
BATCH_SIZE = 200
# A reply slower than this ends the export (a hung server must not hang it forever).
EXPORT_SOCKET_TIMEOUT_MS = 300_000
# Documents between two redraws of the progress bar.
PROGRESS_STEP = 250

Tick = Callable[[int], None]


@click.command("export")
@click.argument("collection", type=click.Choice(COLLECTIONS))
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: as mongoexport writes it; csv: tidy tables for pandas and R.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: stdout). CSV of data also writes <name>-tasks.csv.",
)
@with_appcontext
def export_command(collection: str, output_format: str, out: Path | None) -> None:
    """Export COLLECTION (data, chat_log, sessions; or turns, as CSV) as JSON lines or CSV."""
    refuse_unknown_shape(collection, output_format, out)
    settings = services().settings
    client = export_client(settings.DATABASE_URL)
    database = client[settings.DATABASE_NAME].with_options(codec_options=CODEC_OPTIONS)
    try:
        if collection == TURNS:
            with output_stream(out) as stream:
                count = write_turns_csv(database, stream)
        else:
            count = run_export(database[collection], output_format, out)
    except PyMongoError as error:
        raise click.ClickException(
            f"MongoDB failed during the export ({type(error).__name__}); "
            "check DATABASE_URL and that the database is up, then run it again."
        ) from None
    finally:
        client.close()
    target = out if out is not None else "stdout"
    unit = "rows" if collection == TURNS else "documents"
    click.echo(f"Exported {count} {unit} from {collection} to {target}.", err=True)


# The files the admin page offers, and what writes each (the CLI's exports, as files).
DOWNLOADS = {
    "data.jsonl": (DATA_COLLECTION, "jsonl"),
    "data.csv": (DATA_COLLECTION, "csv"),
    "data-tasks.csv": (DATA_COLLECTION, "csv"),
    "chat_log.jsonl": (CHAT_LOG_COLLECTION, "jsonl"),
    "chat_log.csv": (CHAT_LOG_COLLECTION, "csv"),
    "sessions.jsonl": (SESSIONS_COLLECTION, "jsonl"),
    "turns.csv": (TURNS, "csv"),
}


def export_download(url: str, database_name: str, name: str, folder: Path) -> Path:
    """Write the export called `name` (one of DOWNLOADS) into `folder`; its path."""
    collection, output_format = DOWNLOADS[name]
    client = export_client(url)
    database = client[database_name].with_options(codec_options=CODEC_OPTIONS)
    # data's CSV is two tables written together: data.csv and data-tasks.csv.
    target = folder / (
        "data.csv" if collection == DATA_COLLECTION and output_format == "csv" else name
    )
    try:
        if collection == TURNS:
            with output_stream(target) as stream:
                write_turns_csv(database, stream)
        else:
            run_export(database[collection], output_format, target)
    finally:
        client.close()
    return folder / name


def refuse_unknown_shape(collection: str, output_format: str, out: Path | None) -> None:
    """A usage error for the combinations that have no single file to write."""
    if output_format == "csv" and collection == DATA_COLLECTION and out is None:
        raise click.UsageError(
            "CSV of data is two tables (messages and tasks): give --out FILE.csv "
            "and FILE-tasks.csv is written beside it."
        )
    if collection == TURNS and output_format != "csv":
        raise click.UsageError("turns is a table: give --format csv.")
    if collection == SESSIONS_COLLECTION and output_format == "csv":
        raise click.UsageError("For sessions as a table, export turns --format csv.")


def write_turns_csv(database: Database, stream: TextIO) -> int:
    """One row per message: sessions' conversations, then the legacy API's chat jobs."""
    writer = csv_writer(stream)
    writer.writerow(TURN_COLUMNS)
    count = 0
    for session in documents(database[SESSIONS_COLLECTION], "Exporting sessions"):
        rows = list(session_turn_rows(session))
        writer.writerows(rows)
        count += len(rows)
    turns: dict[Any, int] = {}
    legacy = database[CHAT_LOG_COLLECTION].find(
        {"condition": None}, batch_size=BATCH_SIZE, sort=[("participantId", 1), ("queuedAt", 1)]
    )
    for entry in legacy:
        first = turns.get(entry.get("participantId"), 0) + 1
        turns[entry.get("participantId")] = first + 1
        writer.writerows(legacy_turn_rows(entry, first))
        count += 2
    return count


def export_client(url: str) -> MongoClient:
    """A client for one export: fails fast when MongoDB is down, waits long for slow replies.

    The web's client gives a reply 10 s; a server may take longer to start answering a
    query over a whole large collection (SecantusDB, for one, gathers it all first, and
    answers nothing else meanwhile). connectTimeoutMS is also how long pymongo's monitor
    waits for its heartbeat; a missed heartbeat would cancel the export's query.
    """
    return MongoClient(
        url,
        serverSelectionTimeoutMS=3000,
        connectTimeoutMS=EXPORT_SOCKET_TIMEOUT_MS,
        socketTimeoutMS=EXPORT_SOCKET_TIMEOUT_MS,
        tz_aware=True,
        appname="study-chat-export",
    )


def run_export(source: Collection, output_format: str, out: Path | None) -> int:
    """Write `source` in `output_format` to `out` (None: stdout); the number of documents."""
    if output_format == "jsonl":
        with output_stream(out) as stream:
            return write_jsonl(source, stream)
    if source.name == DATA_COLLECTION:
        assert out is not None
        with output_stream(out) as messages, output_stream(tasks_path(out)) as tasks:
            return write_data_csv(source, messages, tasks)
    with output_stream(out) as stream:
        return write_chat_log_csv(source, stream)


def write_jsonl(source: Collection, stream: TextIO) -> int:
    """One Extended JSON line per document, parsing to what mongoexport gives."""
    count = 0
    for document in documents(source, f"Exporting {source.name}"):
        stream.write(json_line(document) + "\n")
        count += 1
    return count


def write_data_csv(source: Collection, messages: TextIO, tasks: TextIO) -> int:
    """The messages table and the participants table of `data` (two passes: columns, rows)."""
    columns = task_columns(source)
    message_writer = csv_writer(messages)
    tasks_writer = csv_writer(tasks)
    message_writer.writerow(MESSAGE_COLUMNS)
    tasks_writer.writerow(PARTICIPANT_COLUMNS + columns)
    known, late, count = set(columns), 0, 0
    for record in documents(source, f"Exporting {source.name}"):
        message_writer.writerows(message_rows(record))
        tasks_writer.writerow(participant_row(record, columns))
        late += not known.issuperset(flatten_tasks(record.get("tasks")))
        count += 1
    if late:
        click.echo(
            f"Warning: {late} records saved during the export have task answers without a "
            "column; run the export again to include them.",
            err=True,
        )
    return count


def task_columns(source: Collection) -> list[str]:
    """Every flattened task answer name in the collection, in first-seen order."""
    seen: dict[str, None] = {}
    for record in documents(source, "Collecting task columns", projection={"tasks": 1}):
        seen.update(dict.fromkeys(flatten_tasks(record.get("tasks"))))
    return list(seen)


def write_chat_log_csv(source: Collection, stream: TextIO) -> int:
    """One row per chat job."""
    writer = csv_writer(stream)
    writer.writerow(CHAT_LOG_COLUMNS)
    count = 0
    for entry in documents(source, f"Exporting {source.name}"):
        writer.writerow(chat_log_row(entry))
        count += 1
    return count


def csv_writer(stream: TextIO) -> Any:
    """An RFC 4180 CSV writer: quotes only where needed, rows end in \\r\\n.

    \\r\\n rather than \\n because Python's writer quotes a field only for the characters
    of its line terminator: with \\n alone, a lone \\r in a message would go unquoted and
    split the row in pandas and R. Both read \\r\\n files as they are.
    """
    return csv.writer(stream, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")


def documents(
    source: Collection, label: str, projection: dict[str, int] | None = None
) -> Iterator[dict[str, Any]]:
    """Every document of `source` in natural order (as mongoexport), with a progress bar."""
    cursor = source.find({}, projection, batch_size=BATCH_SIZE)
    try:
        with progress_bar(source, label) as tick:
            yield from ticking(cursor, tick)
    finally:
        cursor.close()


def ticking(items: Iterable[Any], tick: Tick) -> Iterator[Any]:
    """Yield `items`, advancing the progress bar every PROGRESS_STEP items and at the end."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == PROGRESS_STEP:
            tick(pending)
            pending = 0
    tick(pending)


@contextlib.contextmanager
def progress_bar(source: Collection, label: str) -> Iterator[Tick]:
    """click's progress bar on stderr when it is a terminal; otherwise nothing at all."""
    if not stderr_is_terminal():
        yield lambda _steps: None
        return
    total = source.estimated_document_count()
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def stderr_is_terminal() -> bool:
    """Whether a person watches stderr (not a pipe, a file or a test runner)."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def output_stream(path: Path | None) -> Iterator[TextIO]:
    """UTF-8 text to `path` (renamed into place when complete), or to stdout."""
    if path is None:
        sys.stdout.flush()
        stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            yield stream
        finally:
            stream.flush()
            stream.detach()  # stdout itself stays open
        return
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
