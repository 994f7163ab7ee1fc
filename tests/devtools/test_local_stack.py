"""`make run` (devtools.local_stack) as a user meets it: a real process, real HTTP, Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from devtools import local_stack
from devtools.servers import RedisServer, free_port, port_accepts
from tests.support.polling import wait_for
from tests.support.stack import ROOT, process_env

# It starts real servers or processes.
pytestmark = pytest.mark.integration

READY = "Study backend running at"
STOPPED = "Everything this run started has stopped."


class LocalStack:
    """`python -m devtools.local_stack` in its own session, its output in a file."""

    def __init__(self, var_dir: Path, env_file: Path, port: int, env: dict[str, str]) -> None:
        self.var_dir, self.port = var_dir, port
        self.output = var_dir.parent / f"output-{port}-{os.urandom(3).hex()}.txt"
        settings = {
            "PORT": str(port),
            "LOCAL_STACK_VAR_DIR": str(var_dir),
            "LOCAL_STACK_ENV_FILE": str(env_file),
            "WEB_CONCURRENCY": "1",  # one gunicorn worker is enough here; saves CPU
            **env,
        }
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devtools.local_stack"],
                cwd=ROOT,
                env=process_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Wait for the banner; remember the processes it started."""
        wait_for(lambda: READY in self.text() or self.proc.poll() is not None, timeout=90)
        assert self.proc.poll() is None, self.text()
        self.children = child_pids(self.proc.pid)

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Signal it as the terminal would (its process group); return its exit code."""
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=90)

    def kill_leftovers(self) -> None:
        """After a failed test: leave nothing running."""
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture()
def launch(tmp_path: Path) -> Iterator:
    """Start local stacks with data under tmp_path; stop whatever a test leaves running."""
    started: list[LocalStack] = []

    def start(
        env_text: str = "", env: dict[str, str] | None = None, port: int | None = None
    ) -> LocalStack:
        env_file = tmp_path / ".env"
        env_file.write_text(env_text)
        stack = LocalStack(tmp_path / "var", env_file, port or free_port(), env or {})
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.kill_leftovers()


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis the user already runs, named in .env."""
    with RedisServer(directory=tmp_path / "own-redis") as server:
        yield server


def child_pids(pid: int) -> list[int]:
    """Pids of the direct children of `pid`."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def command_line(pid: int) -> str:
    return subprocess.run(
        ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True
    ).stdout


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def post(base: str, path: str, body: dict) -> tuple[int, dict | None]:
    """POST JSON; the status and the JSON answer (None for an empty body)."""
    sent = urllib.request.Request(
        base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def chat_answer(base: str, text: str) -> tuple[str, str]:
    """Send one chat turn as a frontend does; the job id and the model's reply."""
    status, queued = post(base, "/chat", {"messages": [{"role": "user", "content": text}]})
    assert status == 202, queued
    job_id = queued["jobId"]

    def answered():
        status, body = post(base, "/check_response", {"jobId": job_id})
        return None if body == {"processing": True} else (status, body)

    status, body = wait_for(answered, timeout=30)
    assert status == 200, body
    return job_id, body["response"]["choices"][0]["message"]["content"]


def banner_ports(text: str) -> list[int]:
    """Ports of the local services the banner names."""
    return [int(port) for port in re.findall(r"//127\.0\.0\.1:(\d+)", text)]


def stopped_cleanly(stack: LocalStack, sig: signal.Signals) -> None:
    """Stop `stack` with `sig`; it exits 0 and none of its processes or ports is left."""
    ports = banner_ports(stack.text())
    assert stack.stop(sig) == 0
    assert STOPPED in stack.text()
    for pid in stack.children:
        wait_for(lambda pid=pid: group_gone(pid), timeout=5)
    assert not [port for port in ports if port_accepts(port)]


def test_runs_the_study_on_local_services_that_stop_and_keep_their_data(launch, tmp_path):
    stack = launch()
    stack.wait_ready()
    banner = stack.text()
    assert "DRY-RUN" in banner and "not from GPT" in banner
    assert str(tmp_path / "var" / "mongo") in banner
    assert len(stack.children) == 5  # redis, SecantusDB, dry-run model, worker, web

    _, reply = chat_answer(stack.url, "Hello from the test")
    assert "not from GPT" in reply and "Hello from the test" in reply
    record = {"participantId": "P-local", "messages": [], "tasks": {}, "condition": "A"}
    assert post(stack.url, "/check_participation", {"id": "P-local"}) == (204, None)
    status, saved = post(stack.url, "/save", record)
    assert (status, saved["prolificCode"]) == (201, "LOCAL-TEST-CODE")
    assert post(stack.url, "/save", record) == (304, None)
    stopped_cleanly(stack, signal.SIGINT)  # Ctrl-C

    again = launch()
    again.wait_ready()
    participated = post(again.url, "/check_participation", {"id": "P-local"})
    assert participated == (302, {"participated": True})
    stopped_cleanly(again, signal.SIGTERM)


def test_a_redis_named_in_dotenv_is_used_instead_of_a_local_one(launch, own_redis, tmp_path):
    stack = launch(
        env_text=f"REDIS_URL={own_redis.url}\nPROLIFIC_CODE=FROM-DOTENV\n",
        env={"PROLIFIC_CODE": "FROM-ENVIRONMENT"},
    )
    stack.wait_ready()
    assert "REDIS_URL from .env" in stack.text()
    assert not [pid for pid in stack.children if "redis-server" in command_line(pid)]
    assert not (tmp_path / "var" / "redis").exists()

    job_id, reply = chat_answer(stack.url, "via my own Redis")
    assert "not from GPT" in reply
    assert redis.Redis.from_url(own_redis.url).exists(f"rq:job:{job_id}")
    record = {"participantId": "P-env", "messages": [], "tasks": {}, "condition": 1}
    status, saved = post(stack.url, "/save", record)
    assert (status, saved["prolificCode"]) == (201, "FROM-ENVIRONMENT")  # .env never overrides

    assert stack.stop(signal.SIGINT) == 0
    assert redis.Redis.from_url(own_redis.url).ping()  # not ours to stop


def test_a_taken_port_is_named_and_nothing_is_started(launch, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        stack = launch(port=holder.getsockname()[1])
        assert stack.proc.wait(timeout=60) == 1
    assert f"Port {stack.port} is already in use" in stack.text()
    assert not (tmp_path / "var" / "mongo").exists()


def test_killed_outright_it_leaves_no_server_running(launch):
    stack = launch()
    stack.wait_ready()
    ports = banner_ports(stack.text())
    # What a closed terminal or an IDE's stop button does: SIGTERM, then SIGKILL 2 s later.
    os.killpg(stack.proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        stack.proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack.proc.pid, signal.SIGKILL)
    stack.proc.wait(timeout=10)
    for pid in stack.children:
        wait_for(lambda pid=pid: group_gone(pid), timeout=40)
    assert not [port for port in ports if port_accepts(port)]


def test_the_next_run_stops_what_a_killed_run_left_behind(tmp_path):
    # Where no parent-death signal exists (macOS), the pid file is what is left to go by.
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    started = psutil.Process(leftover.pid).create_time()
    pid_file = tmp_path / "local_stack.pids"
    pid_file.write_text(json.dumps([{"pid": leftover.pid, "created": started}]))
    try:
        assert local_stack.stop_leftovers(pid_file) == 1
        leftover.wait(timeout=15)
        assert not psutil.pid_exists(leftover.pid)
        assert not pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            leftover.kill()


def test_a_reused_pid_is_never_stopped(tmp_path):
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    pid_file = tmp_path / "local_stack.pids"
    # The same pid, but started at another time: not a process of ours.
    pid_file.write_text(json.dumps([{"pid": bystander.pid, "created": 1.0}]))
    try:
        assert local_stack.stop_leftovers(pid_file) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
