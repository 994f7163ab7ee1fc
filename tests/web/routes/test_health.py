"""GET /healthz and GET /readyz against real Redis, SecantusDB and worker processes."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis

from devtools.servers import MongoServer, RedisServer, WebServer, free_port
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.polling import wait_for
from tests.support.stack import process_env

# /readyz answers by its deadline (2.5 s); load balancers give a probe about 5 s.
ANSWER_WITHIN_S = 5.0


@pytest.fixture()
def make_app(stack_env) -> Iterator:
    """Build apps with settings overriding the session's; closed afterwards."""
    made: list[Flask] = []

    def build(**overrides: str) -> Flask:
        app = create_app({**stack_env, **overrides})
        made.append(app)
        return app

    yield build
    for app in made:
        close_services(app)


def readyz(app: Flask) -> tuple[int, dict, float]:
    """Status, JSON body and seconds taken of one GET /readyz."""
    began = time.monotonic()
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json(), time.monotonic() - began


def test_healthz_answers_without_touching_any_backing_service(make_app):
    app = make_app(
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        DATABASE_URL=f"mongodb://127.0.0.1:{free_port()}",
    )
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}


def test_ready_when_redis_mongodb_and_a_worker_are_up(app, worker):
    # The worker registers in Redis just after it logs that it started.
    status, body, _ = wait_for(lambda: (answer := readyz(app))[0] == 200 and answer, timeout=20)
    assert status == 200
    assert body == {"status": "ready", "checks": {"redis": "ok", "mongodb": "ok", "worker": "ok"}}


@pytest.mark.timeout(30)
def test_redis_down_is_503_naming_redis(make_app):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    status, body, seconds = readyz(app)
    assert status == 503
    assert body["checks"] == {"redis": "down", "mongodb": "ok", "worker": "unknown"}
    assert body["error"] == "Not ready: redis."
    assert seconds < ANSWER_WITHIN_S


@pytest.fixture()
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    """A SecantusDB of this test's own, which it may stop."""
    with MongoServer(directory=tmp_path / "mongo") as server:
        yield server


@pytest.mark.timeout(60)
def test_mongodb_stopped_is_503_naming_mongodb_within_seconds(make_app, worker, own_mongo):
    app = make_app(DATABASE_URL=own_mongo.url)
    wait_for(lambda: readyz(app)[0] == 200, timeout=20)
    own_mongo.stop()
    status, body, seconds = readyz(app)
    assert status == 503
    assert body["checks"] == {"redis": "ok", "mongodb": "down", "worker": "ok"}
    assert body["error"] == "Not ready: mongodb."
    assert seconds < ANSWER_WITHIN_S


@pytest.fixture()
def workerless_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis no worker is registered with (the session's worker uses another)."""
    with RedisServer(directory=tmp_path / "redis") as server:
        yield server


def test_no_worker_is_503_naming_the_worker(make_app, workerless_redis):
    app = make_app(REDIS_URL=workerless_redis.url)
    status, body, _ = readyz(app)
    assert status == 503
    assert body["checks"] == {"redis": "ok", "mongodb": "ok", "worker": "no worker"}
    assert body["error"] == "Not ready: worker."


def test_a_dead_workers_leftover_registration_does_not_count(make_app, workerless_redis):
    # A worker killed with SIGKILL stays in the queue's worker set; its own key expires.
    connection = Redis.from_url(workerless_redis.url)
    connection.sadd("rq:workers:chat", "rq:worker:killed-long-ago")
    connection.close()
    status, body, _ = readyz(make_app(REDIS_URL=workerless_redis.url))
    assert status == 503
    assert body["checks"]["worker"] == "no worker"


class SilentServer:
    """A TCP server that accepts connections and never sends a byte (a hung server)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # closing a socket does not wake a blocked accept()
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted.append(connection)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture()
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.timeout(30)
def test_hung_redis_still_gets_an_answer_within_seconds(make_app, silent_server):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{silent_server.port}/0")
    status, body, seconds = readyz(app)
    assert status == 503
    assert body["checks"]["redis"] in ("down", "timeout")
    assert body["checks"]["mongodb"] == "ok"
    assert body["error"] == "Not ready: redis."
    assert seconds < ANSWER_WITHIN_S
    assert silent_server.accepted, "the probe never reached the hung server"


@pytest.mark.timeout(30)
def test_hung_mongodb_still_gets_an_answer_within_seconds(make_app, worker, silent_server):
    app = make_app(DATABASE_URL=f"mongodb://127.0.0.1:{silent_server.port}")
    status, body, seconds = readyz(app)
    assert status == 503
    assert body["checks"]["mongodb"] in ("down", "timeout")
    assert body["checks"]["redis"] == "ok"
    assert body["error"] == "Not ready: mongodb."
    assert seconds < ANSWER_WITHIN_S
    assert silent_server.accepted, "the probe never reached the hung server"


@pytest.mark.timeout(30)
def test_both_hung_are_checked_at_once_and_named(make_app, silent_server):
    hung = f"127.0.0.1:{silent_server.port}"
    app = make_app(REDIS_URL=f"redis://{hung}/0", DATABASE_URL=f"mongodb://{hung}")
    status, body, seconds = readyz(app)
    assert status == 503
    assert body["error"] == "Not ready: redis, mongodb."
    assert seconds < ANSWER_WITHIN_S
    assert "Errno" not in str(body)
    assert "Timeout" not in str(body)


@pytest.fixture()
def gunicorn_on_hung_redis(stack_env, silent_server, tmp_path) -> Iterator[str]:
    """The real web process (gunicorn, gevent workers) with Redis hung."""
    env = process_env({**stack_env, "REDIS_URL": f"redis://127.0.0.1:{silent_server.port}/0"})
    with WebServer(env, directory=tmp_path / "web") as web:
        yield web.url


@pytest.mark.timeout(60)
def test_gunicorn_answers_both_probes_with_redis_hung(gunicorn_on_hung_redis):
    assert http_get(gunicorn_on_hung_redis + "/healthz")[:2] == (200, {"status": "ok"})
    status, body, seconds = http_get(gunicorn_on_hung_redis + "/readyz")
    assert status == 503
    assert body["error"] == "Not ready: redis."
    assert seconds < ANSWER_WITHIN_S


def http_get(url: str) -> tuple[int, dict, float]:
    """Status, JSON body and seconds taken of a real HTTP GET."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw), time.monotonic() - began
