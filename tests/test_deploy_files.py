"""The deployment files: app.json (Heroku), .do/app.yaml (DigitalOcean App Platform),
Dockerfile + .dockerignore, compose.yaml (one machine) and .python-version.

Each is checked against a schema, against the Procfile (one web and one worker
command everywhere) and against settings.SETTINGS, so that a setting added to the
table but forgotten on one platform fails here instead of at a researcher's deploy.
The Dockerfile's dependency install is replayed in a throwaway venv.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from studychat.settings import SETTINGS, Setting

# It starts real servers or processes.
pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "support" / "deploy_schemas"
BY_NAME = {setting.name: setting for setting in SETTINGS}
GRACE_S = float(BY_NAME["WORKER_SHUTDOWN_GRACE_S"].default)

# Settings a platform sets itself: listing them would fight the platform.
HEROKU_PROVIDED = {
    "PORT": "Heroku's router assigns each web dyno its port",
    "REDIS_URL": "the heroku-redis add-on, attached as REDIS, sets REDIS_URL",
    "WEB_CONCURRENCY": "Heroku sets it from the dyno's memory",
}
# Optional settings whose value differs from the default on purpose, and why.
HEROKU_OVERRIDES = {
    "REDIS_SSL_CERT_REQS": "none",  # Heroku Redis's certificates are self-signed
    "REDIS_MAX_CONNECTIONS": "6",  # mini takes 20 clients: 2 gunicorn processes + 1 worker
}
# Compose runs its own stores: the URLs name its services, not what .env says.
COMPOSE_FIXED = {"DATABASE_URL": "mongodb://mongo:27017", "REDIS_URL": "redis://redis:6379/0"}


def procfile() -> dict[str, str]:
    """Process type -> command, from the Procfile every platform follows."""
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    return {kind.strip(): command.strip() for kind, command in (ln.split(":", 1) for ln in lines)}


def load_yaml(relative: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / relative).read_text())


def validate(document: Any, schema: dict) -> None:
    """Validate with the schema's own draft, formats included; every error is reported."""
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, "\n".join(errors)


def missing_and_stray(names: set[str], expected: set[str], where: str) -> None:
    missing, stray = sorted(expected - names), sorted(names - expected)
    assert not missing, f"{where} lacks settings {missing}: add them (see settings.SETTINGS)"
    assert not stray, f"{where} names {stray}, which settings.SETTINGS does not define"


# --- Heroku: app.json and .python-version ------------------------------------------------


def app_json() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())


def test_app_json_follows_herokus_schema():
    validate(app_json(), json.loads((SCHEMAS / "heroku-app-json.schema.json").read_text()))


def test_app_json_runs_every_procfile_process_on_heroku_redis():
    manifest = app_json()
    assert set(manifest["formation"]) == set(procfile()) == {"web", "worker"}
    for process in manifest["formation"].values():
        assert process == {"quantity": 1, "size": "basic"}
    assert manifest["buildpacks"] == [{"url": "heroku/python"}]
    plans = {addon["plan"].split(":")[0]: addon for addon in manifest["addons"]}
    assert plans["heroku-redis"].get("as", "REDIS") == "REDIS"  # so the URL is REDIS_URL


def test_app_json_asks_for_every_setting():
    env = app_json()["env"]
    for name, reason in HEROKU_PROVIDED.items():
        assert name not in env, f"{name} must not be in app.json: {reason}"
    missing_and_stray(set(env), set(BY_NAME) - set(HEROKU_PROVIDED), "app.json env")
    for name, entry in env.items():
        setting = BY_NAME[name]
        assert entry["description"].strip(), name
        assert entry["required"] is setting.required, f"{name}: required must be {setting.required}"
        if setting.secret:
            assert "value" not in entry, f"{name} is a secret: app.json must not carry a value"
        elif not setting.required:
            expected = HEROKU_OVERRIDES.get(name, setting.default)
            assert entry["value"] == expected, f"{name}: value should be {expected!r}"


def test_heroku_python_version_is_the_images():
    # The Heroku Python buildpack reads .python-version (runtime.txt is deprecated).
    assert not (ROOT / "runtime.txt").exists()
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version), "major.minor: Heroku picks the latest patch"
    assert docker_base_image() == f"python:{version}-slim"
    requires = re.search(r'requires-python = ">=(3\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert tuple(map(int, version.split("."))) >= tuple(map(int, requires[1].split(".")))


# --- DigitalOcean App Platform: .do/app.yaml -----------------------------------------


def do_spec() -> dict[str, Any]:
    return load_yaml(".do/app.yaml")


def only(items: list[dict], name: str) -> dict:
    [item] = [item for item in items if item["name"] == name]
    return item


def test_do_spec_follows_the_app_spec_schema():
    validate(do_spec(), json.loads((SCHEMAS / "do-app-spec.schema.json").read_text()))


def test_do_spec_runs_procfile_commands_from_the_dockerfile():
    spec, commands = do_spec(), procfile()
    web, worker = only(spec["services"], "web"), only(spec["workers"], "worker")
    assert web["run_command"] == commands["web"]
    assert worker["run_command"] == commands["worker"]
    for component in (web, worker):
        assert (ROOT / component["dockerfile_path"]).is_file()
        assert "/" in component["github"]["repo"]
    assert web["health_check"]["http_path"] == "/healthz"
    gunicorn_conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert web["termination"]["grace_period_seconds"] > gunicorn_conf["graceful_timeout"]
    assert worker["termination"]["grace_period_seconds"] > GRACE_S


def test_do_spec_sets_every_setting_for_web_and_worker():
    spec = do_spec()
    web = only(spec["services"], "web")
    databases = {database["name"]: database for database in spec["databases"]}
    shared = {env["key"]: env for env in spec["envs"]}
    for component in (web, only(spec["workers"], "worker")):
        own = {env["key"]: env for env in component.get("envs", [])}
        names = set(shared) | set(own)
        if component is web:
            missing_and_stray(names, set(BY_NAME), ".do/app.yaml (web)")
        else:
            missing_and_stray(names, set(BY_NAME) - {"PORT"}, ".do/app.yaml (worker)")
    assert {env["key"]: env.get("value") for env in web["envs"]} == {"PORT": str(web["http_port"])}
    for name, env in shared.items():
        check_do_env(BY_NAME[name], env, databases)


def check_do_env(setting: Setting, env: dict, databases: dict[str, dict]) -> None:
    """Secrets are SECRET without a value, or bound to a database component of the app."""
    value = env.get("value")
    bound = re.fullmatch(r"\$\{([a-z0-9-]+)\.DATABASE_URL\}", value or "")
    if bound:
        assert bound[1] in databases, f"{setting.name} is bound to an unknown component"
    elif setting.secret:
        assert env.get("type") == "SECRET" and value is None, f"{setting.name}: SECRET, no value"
    elif not setting.required:
        assert value == setting.default, f"{setting.name}: value should be {setting.default!r}"
    assert env["scope"] == "RUN_TIME", setting.name


def test_do_spec_binds_redis_to_a_valkey_cluster():
    spec = do_spec()
    [redis_env] = [env for env in spec["envs"] if env["key"] == "REDIS_URL"]
    database = only(spec["databases"], "redis")
    assert redis_env["value"] == "${redis.DATABASE_URL}"
    assert database["engine"] == "VALKEY" and database["production"] is True


# --- One machine: compose.yaml ------------------------------------------------------


def compose() -> dict[str, Any]:
    return load_yaml("compose.yaml")


def test_compose_follows_the_compose_specification():
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    validate(compose(), json.loads(vendored.read_text()))


def test_compose_passes_every_setting_from_dotenv():
    services = compose()["services"]
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        missing_and_stray(set(environment), set(BY_NAME), f"compose.yaml ({name})")
        for key, value in environment.items():
            setting = BY_NAME[key]
            if key in COMPOSE_FIXED:
                assert value == COMPOSE_FIXED[key]
            elif setting.required:
                assert value.startswith(f"${{{key}:?"), f"{key}: compose must refuse to start"
            else:
                assert value == f"${{{key}:-{setting.default}}}", f"{key}: .env, else default"


def test_compose_starts_web_and_worker_after_healthy_stores():
    services, commands = compose()["services"], procfile()
    assert set(services) == {"web", "worker", "redis", "mongo"}
    assert services["worker"]["command"] == shlex.split(commands["worker"])
    assert "command" not in services["web"]  # the image's CMD: the Procfile's web line
    for name in ("web", "worker"):
        service = services[name]
        assert service["build"] == "." and service["image"] == services["web"]["image"]
        assert service["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "mongo": {"condition": "service_healthy"},
        }
        # Docker's default of 10 s would SIGKILL jobs the worker's grace lets finish.
        assert seconds(service["stop_grace_period"]) > GRACE_S
    assert services["worker"]["healthcheck"] == {"disable": True}
    for host, url in (
        ("redis", COMPOSE_FIXED["REDIS_URL"]),
        ("mongo", COMPOSE_FIXED["DATABASE_URL"]),
    ):
        assert f"//{host}:" in url and services[host]["healthcheck"]["test"][0] == "CMD"


def test_compose_keeps_store_data_in_named_volumes():
    document = compose()
    services = document["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == (
        "yes"
    )
    mounts = {name: services[name]["volumes"][0].split(":") for name in ("redis", "mongo")}
    assert mounts == {"redis": ["redis-data", "/data"], "mongo": ["mongo-data", "/data/db"]}
    assert set(document["volumes"]) == {"redis-data", "mongo-data"}
    for store in ("redis", "mongo"):
        assert "ports" not in services[store], f"{store} must stay on compose's network"


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations in seconds, like 30s: {duration!r}"
    return float(match[1])


def docker_compose() -> list[str] | None:
    """The compose v2 command, if this machine has it (it needs no Docker engine for config)."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"v?2\.\d", probe.stdout):
            return command
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path):
    command = docker_compose()
    if command is None:
        pytest.skip("Docker Compose v2 is not installed here (the schema test above still runs)")
    required = {s.name: "x" for s in SETTINGS if s.required}
    env = {**os.environ, **required}
    result = subprocess.run(
        [*command, "-f", str(ROOT / "compose.yaml"), "--env-file", os.devnull, "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- The image: Dockerfile and .dockerignore ------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, arguments = line.strip().partition(" ")
            pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def instructions(name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == name]


def docker_base_image() -> str:
    [base] = instructions("FROM")
    return base


def test_dockerfile_runs_the_procfiles_web_command_as_a_non_root_user():
    assert docker_base_image() == "python:3.11-slim"
    [cmd] = instructions("CMD")
    assert json.loads(cmd) == shlex.split(procfile()["web"])
    order = [instruction for instruction, _ in dockerfile()]
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    assert order.index("USER") > max(i for i, name in enumerate(order) if name in ("RUN", "COPY"))
    env = " ".join(instructions("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert instructions("EXPOSE") == [BY_NAME["PORT"].default]
    [healthcheck] = instructions("HEALTHCHECK")
    assert "/healthz" in healthcheck and "CMD python" in healthcheck  # slim has no curl


def test_dockerignore_keeps_secrets_tools_and_tests_out():
    patterns = dockerignore()
    for path in (".env", ".venv/bin/python", ".git/HEAD", "tests/test_app.py", "var/db"):
        assert ignored(path, patterns), path
    for path in ("app.py", "worker.py", "gunicorn.conf.py", "requirements.txt"):
        assert not ignored(path, patterns), path


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip().rstrip("/") for line in lines if line.strip()]
    patterns = [pattern for pattern in patterns if not pattern.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `relative` out of the build context (no `!` exceptions)."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatchcase(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatchcase(prefix, pattern)
        or (pattern.startswith("**/") and fnmatch.fnmatchcase(part, pattern[3:]))
        for pattern in patterns
        for prefix, part in zip(prefixes, parts, strict=True)
    )


def copy_build_context(target: Path) -> None:
    """Copy what `COPY . .` would put in the image: the repository minus .dockerignore."""
    patterns = dockerignore()
    for directory, subdirectories, files in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT)
        subdirectories[:] = [d for d in subdirectories if not ignored(str(base / d), patterns)]
        for name in files:
            relative = base / name
            if not ignored(str(relative), patterns):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, target / relative)


def pip_steps() -> list[list[str]]:
    """The Dockerfile's RUN commands that call pip, as argument lists."""
    steps = []
    for run in instructions("RUN"):
        for command in run.split("&&"):
            words = shlex.split(command)
            if words and words[0] == "pip":
                steps.append(words[1:])
    return steps


@pytest.mark.timeout(180)
def test_dockerfile_install_steps_give_an_image_that_imports_web_and_worker(tmp_path: Path):
    """Replays the image build without Docker: an empty venv, the Dockerfile's own pip
    commands run into it (about 35-45 s here with pip's cache), the build context as COPY
    sees it, then the two processes' modules are imported there. Dev tools must be absent."""
    steps = pip_steps()
    assert steps == [["install", "-r", "requirements.txt"]], "runtime dependencies only"
    venv, image = tmp_path / "venv", tmp_path / "app"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    image.mkdir()
    copy_build_context(image)
    for step in steps:  # this pip installs into the venv: no pip bootstrap needed there
        pip = [sys.executable, "-m", "pip", "--python", python, "--quiet"]
        subprocess.run([*pip, *step], cwd=image, check=True, timeout=150)
    imported = subprocess.run(
        [python, "-c", "import app, worker, gunicorn"], cwd=image, capture_output=True, text=True
    )
    assert imported.returncode == 0, imported.stderr
    assert (venv / "bin" / "gunicorn").exists()
    dev_tool = subprocess.run([python, "-c", "import pytest"], capture_output=True, text=True)
    assert "No module named 'pytest'" in dev_tool.stderr
