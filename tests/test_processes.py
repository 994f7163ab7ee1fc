"""The Procfile's processes checked from outside: real gunicorn, real worker, real HTTP."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.servers import WebServer, free_port
from studychat.settings import SETTINGS
from tests.support.polling import wait_for
from tests.support.stack import FRONTEND, ROOT, process_env

# It starts real servers or processes.
pytestmark = pytest.mark.integration

REQUIRED = [s.name for s in SETTINGS if s.required]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def call(base: str, path: str, body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    sent = urllib.request.Request(
        base + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_procfile_runs_gunicorn_and_the_worker():
    entries = procfile()
    assert entries["web"] == "gunicorn -c gunicorn.conf.py app:app"
    assert entries["worker"] == "python worker.py"


@pytest.fixture(scope="module")
def web(stack_env, worker, tmp_path_factory):
    port = free_port()
    env = process_env(stack_env) | {"PORT": str(port)}
    with WebServer(env, port=port, directory=tmp_path_factory.mktemp("web")):
        yield f"http://127.0.0.1:{port}"


def test_chat_flow_over_real_http(web):
    status, _, body = call(web, "/chat", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 202
    job_id = json.loads(body)["jobId"]

    def answered():
        status, _, body = call(web, "/check_response", {"jobId": job_id})
        return (status, json.loads(body)) if b"processing" not in body else None

    status, answer = wait_for(answered, timeout=20)
    assert status == 200
    assert answer["response"]["object"] == "chat.completion"


def test_a_long_poll_under_gunicorn_wakes_and_the_web_still_stops_at_once(
    stack_env, worker, tmp_path
):
    port = free_port()
    server = WebServer(process_env(stack_env) | {"PORT": str(port)}, port=port, directory=tmp_path)
    with server:
        base = f"http://127.0.0.1:{port}"
        _, _, body = call(base, "/chat", {"messages": [{"role": "user", "content": "hi"}]})
        job_id = json.loads(body)["jobId"]
        # Woken on gevent by the process's subscription (a greenlet of its own).
        status, _, body = call(base, "/check_response", {"jobId": job_id, "wait": 8})
        assert status == 200
        assert json.loads(body)["response"]["object"] == "chat.completion"
        server.signal_stop()
        # The subscription holds no request open: gunicorn's graceful stop is immediate.
        assert server.wait_exit(timeout=5) == 0


def test_save_and_participation_over_real_http(web, participant_id):
    record = {"participantId": participant_id, "messages": [], "tasks": {}, "condition": 1}
    assert call(web, "/check_participation", {"id": participant_id})[0] == 204
    assert call(web, "/save", record)[0] == 201
    assert call(web, "/save", record)[0] == 304
    status, _, body = call(web, "/check_participation", {"id": participant_id})
    assert (status, json.loads(body)) == (302, {"participated": True})


def test_errors_over_real_http_are_json(web):
    status, headers, body = call(web, "/missing", {})
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert "error" in json.loads(body)
    status, _, body = call(web, "/chat", {"messages": [{"role": "bot", "content": "x"}]})
    assert status == 400
    assert "messages[0].role" in json.loads(body)["error"]


def test_cors_over_real_http(web):
    headers = {"Origin": FRONTEND}
    _, answer_headers, _ = call(web, "/check_participation", {"id": "x"}, headers)
    assert answer_headers["Access-Control-Allow-Origin"] == FRONTEND


def refused(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = process_env({"GPT_VERSION": "gpt-4o-mini"})
    return subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_worker_refuses_to_start_naming_every_missing_setting(tmp_path):
    result = refused([sys.executable, str(ROOT / "worker.py")], tmp_path)
    assert result.returncode != 0
    for name in set(REQUIRED) - {"GPT_VERSION"}:
        assert name in result.stderr


def test_web_refuses_to_start_naming_every_missing_setting(tmp_path):
    web_line = procfile()["web"].replace("gunicorn.conf.py", str(ROOT / "gunicorn.conf.py"))
    argv = [sys.executable, "-m", *shlex.split(web_line)]
    argv += ["--bind", f"127.0.0.1:{free_port()}"]
    result = refused(argv, tmp_path)
    assert result.returncode != 0
    for name in set(REQUIRED) - {"GPT_VERSION"}:
        assert name in result.stderr


@pytest.mark.parametrize("process", ["web", "worker"])
def test_a_study_file_that_does_not_validate_stops_the_process_naming_field_and_line(
    process, stack_env, tmp_path
):
    study = tmp_path / "study.yaml"
    text = (ROOT / "study.example.yaml").read_text().replace("max_turns: 30", "max_turns: many")
    study.write_text(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if "max_turns" in x)) + 1
    if process == "web":
        web_line = procfile()["web"].replace("gunicorn.conf.py", str(ROOT / "gunicorn.conf.py"))
        argv = [sys.executable, "-m", *shlex.split(web_line), "--bind", f"127.0.0.1:{free_port()}"]
    else:
        argv = [sys.executable, str(ROOT / "worker.py")]
    env = process_env(stack_env | {"STUDY_FILE": str(study)})
    result = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    refusal = [x for x in result.stderr.splitlines() if x.startswith("Refusing to start")]
    assert refusal == [
        f"Refusing to start: Study file {study}: field max_turns (line {line}): "
        "Input should be a valid integer, unable to parse string as an integer."
    ]
    assert "Traceback" not in result.stderr
