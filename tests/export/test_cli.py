"""`flask --app app export`: real SecantusDB, the real CLI, output as mongoexport gives it."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bson
import pytest
from flask import Flask
from pymongo import MongoClient
from pymongo.database import Database

from devtools.servers import MongoServer, free_port
from studychat.export.jsonl import CODEC_OPTIONS, parse_line
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.stack import ROOT, process_env

SAVED = datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
# Lines as mongoexport writes them for RECORDS (Extended JSON v2 relaxed; see
# tests/export/test_jsonl.py for the Go sources these rules come from). The export must
# parse to the same documents.
RECORDS = [
    {
        "_id": "P-alpha",
        "messages": [
            {"role": "user", "content": 'Hi, "bot" <b>&\nbye'},
            {"role": "assistant", "content": "Grüße 👋", "score": 1234567.0},
        ],
        "tasks": {"q1": 3, "block": {"a": True, "b": 0.5}, "list": [1, 2]},
        "condition": {"arm": "B", "dose": 1e-7},
        "savedAt": SAVED,
    },
    {
        "_id": "P-beta",
        "messages": [],
        "tasks": {"q1": 4, "q2": "free, text"},
        "condition": "control",
        "savedAt": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    },
]
EXPECTED_LINES = [
    '{"_id":"P-alpha","messages":[{"role":"user","content":"Hi, \\"bot\\" <b>&\\nbye"},'
    '{"role":"assistant","content":"Grüße 👋","score":1.234567E+06}],'
    '"tasks":{"q1":3,"block":{"a":true,"b":0.5},"list":[1,2]},'
    '"condition":{"arm":"B","dose":1E-07},"savedAt":{"$date":"2024-05-01T12:00:00.5Z"}}',
    '{"_id":"P-beta","messages":[],"tasks":{"q1":4,"q2":"free, text"},"condition":"control",'
    '"savedAt":{"$date":"2024-05-01T12:00:00Z"}}',
]


@pytest.fixture()
def database_name() -> str:
    """A database no other test uses."""
    return "export_" + uuid.uuid4().hex[:12]


@pytest.fixture()
def database(stack_env, database_name) -> Iterator[Database]:
    """That database, dropped afterwards."""
    client = MongoClient(stack_env["DATABASE_URL"], tz_aware=True)
    yield client[database_name]
    client.drop_database(database_name)
    client.close()


@pytest.fixture()
def export_app(stack_env, database_name) -> Iterator[Flask]:
    """The app, pointed at the test's own database."""
    made = create_app({**stack_env, "DATABASE_NAME": database_name})
    yield made
    close_services(made)


def export(app: Flask, *args: str):
    """Run `flask export ARGS` through click's runner; fail on an unexpected exception."""
    result = app.test_cli_runner().invoke(args=["export", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def same_documents(lines: list[str], mongoexports: list[str]) -> bool:
    """Whether the lines stand for the same BSON documents, byte for byte, in any order."""

    def encoded(text: list[str]) -> list[bytes]:
        return sorted(bson.encode(parse_line(line), codec_options=CODEC_OPTIONS) for line in text)

    return encoded(lines) == encoded(mongoexports)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.reader(stream))


def test_jsonl_is_what_mongoexport_writes(export_app, database):
    database.data.insert_many(RECORDS)
    result = export(export_app, "data")
    assert result.exit_code == 0
    assert same_documents(result.stdout_bytes.decode("utf-8").splitlines(), EXPECTED_LINES)
    assert result.stdout_bytes.endswith(b"}\n")
    assert result.stderr == "Exported 2 documents from data to stdout.\n"


def test_jsonl_to_a_file_leaves_only_the_finished_file(export_app, database, tmp_path):
    database.data.insert_many(RECORDS)
    out = tmp_path / "data.jsonl"
    result = export(export_app, "data", "--format", "jsonl", "--out", str(out))
    assert result.exit_code == 0
    assert same_documents(out.read_text(encoding="utf-8").splitlines(), EXPECTED_LINES)
    assert [path.name for path in tmp_path.iterdir()] == ["data.jsonl"]
    assert result.stdout == ""


def test_chat_log_jsonl_exports_whatever_documents_are_there(export_app, database):
    entry = {
        "_id": "job-1",
        "participantId": "P-alpha",
        "status": "finished",
        "usage": {"prompt_tokens": 12},
        "queuedAt": datetime(2024, 5, 1, 12, 0, 0, 120000, tzinfo=UTC),
        "anything": [None, False, {"nested": 2.0}],
    }
    database.chat_log.insert_one(entry)
    result = export(export_app, "chat_log")
    written = result.stdout_bytes.decode("utf-8")
    assert written.endswith("\n") and written.count("\n") == 1
    expected = (
        '{"_id":"job-1","participantId":"P-alpha","status":"finished",'
        '"usage":{"prompt_tokens":12},"queuedAt":{"$date":"2024-05-01T12:00:00.12Z"},'
        '"anything":[null,false,{"nested":2.0}]}'
    )
    assert same_documents(written.splitlines(), [expected])


def test_csv_of_saved_records_gives_message_and_task_tables(export_app, database, tmp_path):
    client = export_app.test_client()
    for body in RECORDS:
        saved = {key: value for key, value in body.items() if key not in ("_id", "savedAt")}
        # Sent as a browser sends it: the test client's json= would sort the keys.
        sent = json.dumps({"participantId": body["_id"], **saved})
        answer = client.post("/save", data=sent, content_type="application/json")
        assert answer.status_code == 201
    out = tmp_path / "study.csv"
    result = export(export_app, "data", "--format", "csv", "--out", str(out))
    assert result.exit_code == 0
    messages, tasks = read_csv(out), read_csv(tmp_path / "study-tasks.csv")
    assert messages[0] == ["participantId", "condition", "savedAt", "turn", "role", "content"]
    assert [row[:1] + row[3:] for row in messages[1:]] == [
        ["P-alpha", "1", "user", 'Hi, "bot" <b>&\nbye'],
        ["P-alpha", "2", "assistant", "Grüße 👋"],
    ]
    # A condition that is an object stays one JSON cell.
    assert [json.loads(row[1]) for row in messages[1:]] == [{"arm": "B", "dose": 1e-7}] * 2
    assert tasks[0] == [
        "participantId",
        "condition",
        "savedAt",
        "tasks.q1",
        "tasks.block.a",
        "tasks.block.b",
        "tasks.list",
        "tasks.q2",
    ]
    rows = {row[0]: row for row in tasks[1:]}
    assert rows["P-alpha"][3:] == ["3", "TRUE", "0.5", "[1,2]", ""]
    assert rows["P-beta"][1] == "control"
    assert rows["P-beta"][3:] == ["4", "", "", "", "free, text"]
    stored = database.data.find_one({"_id": "P-beta"})["savedAt"]
    assert rows["P-beta"][2] == stored.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{stored.microsecond // 1000:03d}Z"
    )


def test_csv_of_data_needs_a_file_name(export_app, database):
    result = export(export_app, "data", "--format", "csv")
    assert result.exit_code == 2
    assert "give --out FILE.csv" in result.stderr


def test_chat_log_csv_has_one_row_per_job(export_app, database):
    database.chat_log.insert_one(
        {
            "_id": "job-7",
            "participantId": "P-alpha",
            "messages": [{"role": "user", "content": "Question, one?"}],
            "status": "finished",
            "response": {"choices": [{"message": {"content": 'Answer "quoted"'}}]},
            "queuedAt": datetime(2024, 5, 1, 12, tzinfo=UTC),
            "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            "attempts": 2,
        }
    )
    result = export(export_app, "chat_log", "--format", "csv")
    rows = list(csv.reader(io.StringIO(result.stdout_bytes.decode("utf-8"), newline="")))
    assert rows[0][:3] == ["jobId", "participantId", "status"]
    assert rows[1] == [
        "job-7",
        "P-alpha",
        "finished",
        "gpt-4o-mini",
        "9",
        "4",
        "13",
        "2",
        "2024-05-01T12:00:00.000Z",
        "",
        "",
        "Question, one?",
        'Answer "quoted"',
        "",
    ]


@pytest.mark.timeout(30)
def test_database_down_fails_clearly_without_a_partial_file(stack_env, tmp_path):
    dead = f"mongodb://127.0.0.1:{free_port()}"
    app = create_app({**stack_env, "DATABASE_URL": dead})
    try:
        out = tmp_path / "data.jsonl"
        result = export(app, "data", "--out", str(out))
    finally:
        close_services(app)
    assert result.exit_code == 1
    assert "MongoDB failed during the export" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def cli_env(stack_env: dict[str, str], database_name: str) -> dict[str, str]:
    return process_env({**stack_env, "DATABASE_NAME": database_name})


# As a user names it from any folder: Flask imports app.py from the checkout.
APP = str(ROOT / "app")


def flask_export(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", APP, "export", *args]


def test_flask_cli_builds_the_app_from_the_environment(
    stack_env, database_name, database, tmp_path
):
    database.data.insert_many(RECORDS)
    done = subprocess.run(
        flask_export("data"),
        env=cli_env(stack_env, database_name),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert same_documents(done.stdout.decode("utf-8").splitlines(), EXPECTED_LINES)


def test_flask_cli_refuses_to_start_without_settings(tmp_path):
    done = subprocess.run(
        flask_export("data"),
        env=process_env({}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Refusing to start: Missing required settings: ")
    assert "DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def read_terminal(master: int, process: subprocess.Popen, timeout: float) -> bytes:
    """Everything written to the terminal until the process exits and the terminal drains."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    return seen


def test_progress_bar_is_drawn_on_a_terminal(stack_env, database_name, database, tmp_path):
    database.data.insert_many(RECORDS)
    master, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            flask_export("data", "--out", str(tmp_path / "data.jsonl")),
            env=cli_env(stack_env, database_name),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        )
        os.close(terminal)
        screen = read_terminal(master, process, timeout=60)
        assert process.wait(timeout=10) == 0
    finally:
        os.close(master)
    assert b"Exporting data" in screen
    assert b"100%" in screen
    assert b"Exported 2 documents from data" in screen


# Runs the flask CLI and records the process's own peak RSS (VmHWM) at exit. Not
# getrusage: across exec it keeps the high-water mark of the forked parent (here the
# test process, itself large after building 100k records), which would hide the export's.
MEASURED_CLI = """
import atexit, os, sys
def record_peak():
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    open(os.environ["PEAK_RSS_FILE"], "w").write(status)
atexit.register(record_peak)
from flask.cli import main
sys.argv[0] = "flask"
main()
"""


def peak_rss_mib(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Run `flask ARGS`; its own peak resident memory in MiB."""
    peak_file = cwd / "peak-rss"
    done = subprocess.run(
        [sys.executable, "-c", MEASURED_CLI, *args],
        env={**env, "PEAK_RSS_FILE": str(peak_file)},
        cwd=cwd,
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return int(peak_file.read_text()) / 1024  # kB


def participant(index: int) -> dict:
    return {
        "_id": f"P-{index:06d}",
        "messages": [
            {"role": "user", "content": f"Question {index}?"},
            {"role": "assistant", "content": "An answer."},
        ],
        "tasks": {"q1": index % 7, "block": {"a": True}},
        "condition": {"arm": "AB"[index % 2]},
        "savedAt": SAVED,
    }


def insert_participants(database: Database, start: int, stop: int) -> None:
    for first in range(start, stop, 5000):
        batch = [participant(index) for index in range(first, min(first + 5000, stop))]
        database.data.insert_many(batch, ordered=False)


@pytest.fixture()
def bulk_mongo(tmp_path) -> Iterator[MongoServer]:
    """An in-memory SecantusDB of the test's own, for 100k records (killed, not dropped)."""
    server = MongoServer(directory=tmp_path / "mongo").start()
    yield server
    server.kill()


@pytest.mark.timeout(300)
def test_memory_stays_flat_from_10k_to_100k_records(stack_env, bulk_mongo, tmp_path):
    env = cli_env({**stack_env, "DATABASE_URL": bulk_mongo.url}, "bulk")
    client = MongoClient(bulk_mongo.url)
    database = client.bulk
    jsonl = ["--app", APP, "export", "data", "--out", str(tmp_path / "data.jsonl")]
    table = ["--app", APP, "export", "data", "--format", "csv", "--out", str(tmp_path / "d.csv")]
    insert_participants(database, 0, 10_000)
    small = [peak_rss_mib(jsonl, env, tmp_path), peak_rss_mib(table, env, tmp_path)]
    insert_participants(database, 10_000, 100_000)
    large = [peak_rss_mib(jsonl, env, tmp_path), peak_rss_mib(table, env, tmp_path)]
    assert sum(1 for _ in (tmp_path / "data.jsonl").open(encoding="utf-8")) == 100_000
    assert len(read_csv(tmp_path / "d-tasks.csv")) == 100_001
    client.close()
    print(f"peak RSS MiB (jsonl, csv): 10k {small}, 100k {large}")  # shown with -s
    # Keeping the records would cost far more: 90k more decoded records are over 50 MiB.
    for before, after in zip(small, large, strict=True):
        assert after - before < 8, f"peak RSS grew from {before:.1f} to {after:.1f} MiB"
