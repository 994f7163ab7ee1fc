"""The managed server processes of devtools.servers, run for real."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pymongo
import pytest
import redis

from devtools.servers import (
    REPO_ROOT,
    FakeOpenAIServer,
    ManagedProcess,
    MongoServer,
    RedisServer,
    ServerStartError,
    WebServer,
    WorkerProcess,
    free_port,
    log_contains,
    port_accepts,
)
from tests.support.polling import wait_for

# It starts real servers or processes.
pytestmark = pytest.mark.integration

FAKE_OPENAI = REPO_ROOT / "devtools" / "fake_openai.py"


def gone(pid: int) -> bool:
    """The pid no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat_file.parent.name))
    return members


def python_process(tmp_path: Path, code: str, **kwargs) -> ManagedProcess:
    """A ManagedProcess running a small Python script."""
    return ManagedProcess(
        [sys.executable, "-c", textwrap.dedent(code)], directory=tmp_path, **kwargs
    )


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    with RedisServer(directory=tmp_path) as server:
        assert server.running
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
        pid = server.pid
        assert pid is not None
    assert not server.running
    assert server.pid is None
    wait_for(lambda: gone(pid), timeout=5)
    assert not port_accepts(server.port)
    assert "Ready to accept connections" in server.log_path.read_text()


def test_redis_kill_then_restart_on_same_port(tmp_path: Path) -> None:
    with RedisServer(directory=tmp_path) as server:
        port, first_pid = server.port, server.pid
        server.kill()
        assert not server.running
        wait_for(lambda: not port_accepts(port), timeout=5)
        server.restart()
        assert server.port == port
        assert server.pid != first_pid
        client = redis.Redis.from_url(server.url)
        assert client.set("key", "value")
        client.close()


def test_persistent_redis_keeps_data_across_restart(tmp_path: Path) -> None:
    with RedisServer(directory=tmp_path, data_dir=tmp_path / "data", persistent=True) as server:
        client = redis.Redis.from_url(server.url)
        client.set("study", "kept")
        client.close()
        server.restart()
        client = redis.Redis.from_url(server.url)
        assert client.get("study") == b"kept"
        client.close()
    assert (tmp_path / "data" / "appendonly.aof").exists()


def test_redis_on_taken_port_fails_with_log_tail(tmp_path: Path) -> None:
    with RedisServer(directory=tmp_path / "first") as first:
        second = RedisServer(directory=tmp_path / "second", port=first.port)
        with pytest.raises(ServerStartError, match="Address already in use") as failure:
            second.start()
        assert "exited with code" in str(failure.value)
        assert str(second.log_path) in str(failure.value)
        assert not second.running
        client = redis.Redis.from_url(first.url)
        assert client.ping()
        client.close()


def test_mongo_restart_keeps_stored_data(tmp_path: Path) -> None:
    with MongoServer(directory=tmp_path, storage_path=tmp_path / "data") as server:
        assert server.url == f"mongodb://127.0.0.1:{server.port}"
        with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=5000) as client:
            client.study.records.insert_one({"participant": "P-1"})
        port, first_pid = server.port, server.pid
        server.restart()
        assert (server.port, server.running) == (port, True)
        assert server.pid != first_pid
        with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=5000) as client:
            found = client.study.records.find_one({"participant": "P-1"})
        assert found is not None


def test_mongo_in_memory_starts(tmp_path: Path) -> None:
    with MongoServer(directory=tmp_path) as server:
        assert ":memory:" in server.argv
        with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=5000) as client:
            assert client.admin.command("ping")["ok"] == 1.0
        assert server.start_seconds is not None


@pytest.mark.skipif(not FAKE_OPENAI.exists(), reason="devtools/fake_openai.py not written yet")
def test_fake_openai_answers_models(tmp_path: Path) -> None:
    with FakeOpenAIServer(directory=tmp_path, latency=0.0) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("GET", "/v1/models")
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
    assert answer.status == 200
    assert isinstance(body["data"], list)


def test_process_exiting_early_fails_with_its_output(tmp_path: Path) -> None:
    code = "print('no config here'); raise SystemExit(3)"
    process = python_process(tmp_path, code, name="early", ready_check=log_contains("serving"))
    with pytest.raises(ServerStartError, match="exited with code 3") as failure:
        process.start()
    assert "no config here" in str(failure.value)


def test_process_never_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    process = python_process(
        tmp_path,
        "import time\nwhile True: time.sleep(1)",
        name="slow",
        ready_check=lambda _: False,
        ready_timeout=0.5,
    )
    with pytest.raises(ServerStartError, match=r"not ready within 0\.5s"):
        process.start()
    assert not process.running


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = """
        import subprocess, sys, time
        stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('armed', flush=True); time.sleep(300)"
        child = subprocess.Popen([sys.executable, "-c", stubborn])
        print("child", child.pid, flush=True)
        while True: time.sleep(1)
    """  # noqa: E501

    def both_up(process: ManagedProcess) -> bool:
        return "armed" in process.log_text() and "child " in process.log_text()

    with python_process(tmp_path, code, name="group", ready_check=both_up) as leader:
        child_pid = int(leader.log_text().split("child ")[1].split()[0])
        pgid = leader.pid
        assert sorted(group_members(pgid)) == sorted([pgid, child_pid])
    wait_for(lambda: gone(child_pid), timeout=5)
    assert group_members(pgid) == []


def test_port_already_answering_is_refused_for_http_processes(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web = WebServer({}, taken.getsockname()[1], directory=tmp_path, cwd=tmp_path)
        with pytest.raises(ServerStartError, match="already in use"):
            web.start()
    assert web.pid is None


def test_web_server_counts_a_404_as_up_and_leaves_no_workers(tmp_path: Path) -> None:
    (tmp_path / "gunicorn.conf.py").write_text(
        "import os\nbind = f\"127.0.0.1:{os.environ['PORT']}\"\nworkers = 2\n"
    )
    (tmp_path / "app.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('404 NOT FOUND', [('Content-Type', 'application/json')])\n"
        '    return [b\'{"error": "not found"}\']\n'
    )
    with WebServer({}, directory=tmp_path / "logs", cwd=tmp_path) as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().status == 404
        conn.close()
        pgid = web.pid
        wait_for(lambda: len(group_members(pgid)) == 3, timeout=10)  # master + 2 workers
    wait_for(lambda: group_members(pgid) == [], timeout=5)
    assert not port_accepts(web.port)


def test_worker_readiness_follows_its_log(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(
        "import sys, time\nprint('worker started', sys.argv[1:])\nwhile True: time.sleep(1)\n"
    )
    env = {"STUDY_MARK": "x"}
    with WorkerProcess(env, ["--burst"], directory=tmp_path / "logs", cwd=tmp_path) as worker:
        assert "worker started ['--burst']" in worker.log_text()
    custom = WorkerProcess(
        env,
        directory=tmp_path / "logs",
        cwd=tmp_path,
        ready_check=log_contains("never printed"),
        ready_timeout=0.5,
    )
    with pytest.raises(ServerStartError, match=r"not ready within 0\.5s"):
        custom.start()


def test_interpreter_exit_stops_leftover_servers(tmp_path: Path) -> None:
    code = f"""
        from pathlib import Path
        from devtools.servers import RedisServer
        server = RedisServer(directory=Path({str(tmp_path)!r})).start()
        print(server.pid, flush=True)
        raise KeyboardInterrupt  # as if Ctrl-C interrupted the test run
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "KeyboardInterrupt" in result.stderr
    pid = int(result.stdout.split()[0])
    wait_for(lambda: gone(pid), timeout=5)


def test_sigterm_to_the_parent_stops_its_servers(tmp_path: Path) -> None:
    pid_file = tmp_path / "redis.pid"
    code = f"""
        import time
        from pathlib import Path
        from devtools.servers import RedisServer
        server = RedisServer(directory=Path({str(tmp_path)!r})).start()
        Path({str(pid_file)!r}).write_text(str(server.pid))
        while True:
            time.sleep(1)
    """
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=30)
        parent.terminate()
        assert parent.wait(timeout=30) == -signal.SIGINT  # unwound as if by Ctrl-C
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: gone(int(pid_file.read_text())), timeout=5)
