"""The garbage collector of the web and worker processes, set once each has started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.servers import WebServer
from studychat.gc_tuning import YOUNGEST_EVERY
from tests.support.polling import wait_for
from tests.support.stack import process_env

pytestmark = pytest.mark.timeout(120)

# Run in a fresh interpreter: the setting is process-wide, and the tests' own must not change.
PROBE = """
import gc, json
from studychat.gc_tuning import tune_garbage_collector
made_at_startup = [{}]
default = gc.get_threshold()
tune_garbage_collector()
made_later = [{}]
walked = gc.get_objects()
print(json.dumps({
    "default": default,
    "tuned": gc.get_threshold(),
    "frozen": gc.get_freeze_count(),
    "startup_walked": any(o is made_at_startup for o in walked),
    "later_walked": any(o is made_later for o in walked),
}))
"""


def test_startup_objects_are_frozen_and_the_youngest_generation_waits_longer():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    seen = json.loads(run.stdout)
    # What startup made is set aside, never walked by a collection again; what the process
    # makes afterwards is collected as usual.
    assert seen["frozen"] > 1_000
    assert (seen["startup_walked"], seen["later_walked"]) == (False, True)
    # Only the youngest generation's threshold moves; the older ones keep Python's default.
    assert seen["tuned"] == [YOUNGEST_EVERY, *seen["default"][1:]]
    assert seen["default"][0] < YOUNGEST_EVERY


def tuning_lines(path: Path, expected: int) -> list[dict] | None:
    """The log's lines of gc_tuning, once there are `expected` of them."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    found = [line for line in lines if line["logger"] == "studychat.gc_tuning"]
    return found if len(found) >= expected else None


def test_every_web_and_worker_process_sets_its_collector_once_started(
    own_stack_env, start_worker, tmp_path
):
    web_env = process_env(own_stack_env) | {"WEB_CONCURRENCY": "2"}
    worker = start_worker(own_stack_env)
    with WebServer(web_env, directory=tmp_path / "web") as web:
        # One line per gunicorn worker process, written once its app is loaded.
        web_lines = wait_for(lambda: tuning_lines(web.log_path, 2), timeout=30)
    worker_lines = wait_for(lambda: tuning_lines(worker.log_path, 1), timeout=30)
    assert (len(web_lines), len(worker_lines)) == (2, 1)
    for line in [*web_lines, *worker_lines]:
        assert f"every {YOUNGEST_EVERY} allocations" in line["message"]
        frozen = int(line["message"].split(": ", 1)[1].split()[0])
        assert frozen > 10_000
