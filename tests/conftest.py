"""Fixtures: real Redis, SecantusDB and OpenAI-compatible servers, the app and a worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pymongo import MongoClient
from pymongo.database import Database
from redis import Redis

from devtools.servers import FakeOpenAIServer, MongoServer, RedisServer, WorkerProcess
from studychat.factory import create_app
from studychat.web.services import close_services
from tests.support.stack import FRONTEND, PROLIFIC_CODE, process_env
from tests.support.upstream import control

# A test that uses one of these talks to real servers: an integration test.
SERVER_FIXTURES = frozenset(
    {"server_dir", "redis_server", "mongo_server", "upstream_server", "own_redis", "tmp_servers"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test unit, integration or browser (`make test-fast` runs the unit ones)."""
    for item in items:
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.browser)
        elif item.get_closest_marker("integration") is None:
            uses_servers = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.integration if uses_servers else pytest.mark.unit)


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's servers keep their logs and data."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_server(server_dir: Path) -> Iterator[RedisServer]:
    """A real redis-server process."""
    with RedisServer(directory=server_dir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def mongo_server(server_dir: Path) -> Iterator[MongoServer]:
    """A real SecantusDB process speaking the MongoDB wire protocol."""
    with MongoServer(directory=server_dir / "mongo", storage_path=server_dir / "mongo-data") as s:
        yield s


@pytest.fixture(scope="session")
def upstream_server(server_dir: Path) -> Iterator[FakeOpenAIServer]:
    """A real HTTP server speaking the OpenAI chat completions API."""
    with FakeOpenAIServer(directory=server_dir / "upstream", latency=0.05) as server:
        yield server


@pytest.fixture(scope="session")
def stack_env(redis_server, mongo_server, upstream_server) -> dict[str, str]:
    """Settings that point the service at the session's servers."""
    return {
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": upstream_server.base_url,
        "GPT_VERSION": "gpt-4o-mini",
        "GPT_TOKEN_LIMIT": "300",
        "FRONTEND_URL": f"{FRONTEND},http://localhost:5173",
        "DATABASE_URL": mongo_server.url,
        "DATABASE_NAME": "study_test",
        "REDIS_URL": redis_server.url,
        "PROLIFIC_CODE": PROLIFIC_CODE,
        "LLM_MAX_RETRIES": "2",
        "LLM_TIMEOUT_S": "5",
        # The suite starts hundreds of chats from one address within a minute; the tests of
        # the limit itself (tests/test_rate_limits.py) build apps with tight ones.
        "CHAT_RATE_LIMIT": "100000/minute",
        "CHAT_RATE_LIMIT_PER_IP": "100000/minute",
        "STUDY_TOKEN_BUDGET": "none",
    }


@pytest.fixture(scope="session")
def worker(stack_env, server_dir: Path) -> Iterator[WorkerProcess]:
    """The real worker process, `python worker.py`, as the Procfile runs it."""
    with WorkerProcess(process_env(stack_env), directory=server_dir / "worker") as process:
        yield process


@pytest.fixture()
def upstream(upstream_server: FakeOpenAIServer) -> Iterator[FakeOpenAIServer]:
    """The upstream, reset before and after the test (faults, request log, latency)."""
    control(upstream_server, {"reset": True})
    yield upstream_server
    control(upstream_server, {"reset": True})


@pytest.fixture()
def app(stack_env) -> Iterator[Flask]:
    """The app built by the factory against the real servers."""
    made = create_app(stack_env)
    made.testing = True
    yield made
    close_services(made)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture()
def db(stack_env) -> Iterator[Database]:
    """The study's MongoDB database, as a researcher reads it (dates timezone-aware)."""
    mongo = MongoClient(stack_env["DATABASE_URL"], tz_aware=True)
    yield mongo[stack_env["DATABASE_NAME"]]
    mongo.close()


@pytest.fixture()
def participant_id() -> str:
    """A participant id no other test uses."""
    return "P-" + uuid.uuid4().hex


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test alone, persistent so that it survives a restart."""
    with RedisServer(directory=tmp_path / "redis", persistent=True) as server:
        yield server


@pytest.fixture()
def connection(own_redis: RedisServer) -> Iterator[Redis]:
    """A client of the test's own Redis, to look at queues and registries directly."""
    client = Redis.from_url(own_redis.url)
    yield client
    client.close()


@pytest.fixture()
def own_stack_env(stack_env, own_redis: RedisServer) -> dict[str, str]:
    """Settings of an isolated stack: its own Redis and database, fast heartbeats."""
    return stack_env | {
        "REDIS_URL": own_redis.url,
        "DATABASE_NAME": "study_" + uuid.uuid4().hex[:12],
        "WORKER_HEARTBEAT_S": "1",
    }


@pytest.fixture()
def start_worker(tmp_path: Path) -> Iterator:
    """Start real worker processes (`python worker.py`) with given settings; stop them after."""
    started: list[WorkerProcess] = []

    def start(settings: dict[str, str], *args: str) -> WorkerProcess:
        process = WorkerProcess(process_env(settings), args, directory=tmp_path / "workers")
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture()
def own_app(own_stack_env) -> Iterator[Flask]:
    """The app of the isolated stack."""
    made = create_app(own_stack_env)
    yield made
    close_services(made)
