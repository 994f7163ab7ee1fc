"""`make fuzz`: schemathesis against a live web and worker on local servers, every check.

Starts Redis, SecantusDB, the dry-run model, gunicorn and a worker (as the test suite
does), then runs `st run <url>/openapi.json --checks all` with the admin token, with a
new seed each time (the suite's run keeps a fixed one). Extra arguments go to `st run`,
e.g. `make fuzz FUZZ_ARGS="-n 200"`.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.servers import (
    REPO_ROOT,
    FakeOpenAIServer,
    MongoServer,
    RedisServer,
    WebServer,
    WorkerProcess,
)

CONFIG = REPO_ROOT / "tests" / "support" / "schemathesis.toml"


def main(argv: list[str]) -> int:
    """Run the fuzzer against a fresh local stack; its exit code."""
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        where = Path(folder)
        with (
            RedisServer(directory=where / "redis") as redis_server,
            MongoServer(directory=where / "mongo") as mongo,
            FakeOpenAIServer(directory=where / "model", latency=0.05) as model,
        ):
            env = {
                **os.environ,
                "OPENAI_API_KEY": "dry-run",
                "OPENAI_BASE_URL": model.base_url,
                "GPT_VERSION": "gpt-4o-mini",
                "FRONTEND_URL": "http://localhost:5173",
                "DATABASE_URL": mongo.url,
                "REDIS_URL": redis_server.url,
                "PROLIFIC_CODE": "FUZZ",
                "STUDY_TOKEN_BUDGET": "none",
                "STUDY_FILE": str(REPO_ROOT / "study.example.yaml"),
                "ADMIN_TOKEN": token,
            }
            with WebServer(env, directory=where) as web, WorkerProcess(env, directory=where):
                st = Path(sys.executable).parent / "st"
                command = [str(st), "--config-file", str(CONFIG), "run", web.url + "/openapi.json"]
                command += ["--checks", "all", "--suppress-health-check", "too_slow"]
                command += ["-H", f"Authorization: Bearer {token}"]
                return subprocess.run([*command, *argv], cwd=where, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
