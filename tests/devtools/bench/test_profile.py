"""Reading py-spy's raw stacks into the functions that used the most CPU."""

from __future__ import annotations

import importlib

import pytest

from devtools.bench.profile import (
    OTHER,
    PHASES,
    Profiler,
    library_of,
    parse_raw,
    phase_of,
    report_text,
    shares_by,
    top_functions,
)

RAW = [
    'process 12:"python worker.py";main (worker.py:44);run (jobs.py:30);send (http.py:9) 6',
    'process 12:"python worker.py";main (worker.py:44);run (jobs.py:30) 2',
    'process 12:"python worker.py";main (worker.py:44);log (logging.py:5) 2',
    "a broken line without a count",
]


def test_raw_lines_become_stacks_without_the_process_frame():
    stacks = parse_raw(RAW)
    assert stacks[("main (worker.py:44)", "run (jobs.py:30)", "send (http.py:9)")] == 6
    assert sum(stacks.values()) == 10


def test_top_functions_by_own_and_inclusive_time():
    total, own, inclusive = top_functions(parse_raw(RAW))
    assert total == 10
    assert own[0] == ("send (http.py:9)", pytest.approx(0.6))
    assert dict(inclusive)["run (jobs.py:30)"] == pytest.approx(0.8)
    assert dict(inclusive)["main (worker.py:44)"] == pytest.approx(1.0)


def test_report_names_samples_and_shares():
    text = report_text("concurrent-200 worker", parse_raw(RAW))
    assert text.startswith("concurrent-200 worker: 10 samples at 100 Hz")
    assert " 60.0%  send (http.py:9)" in text


SERVED = [
    "handle (gunicorn/workers/base_async.py:38);__next__ (gunicorn/http/parser.py:107) 3",
    "handle (gunicorn/workers/base_async.py:38);wsgi_app (flask/app.py:1500);"
    "enqueue_chat (studychat/chat/task_queue.py:64);execute (redis/client.py:2198) 4",
    "handle (gunicorn/workers/base_async.py:38);wsgi_app (flask/app.py:1500);"
    "chat (studychat/web/routes/chat.py:47) 2",
    "run (gevent/hub.py:631) 1",
]
PARTS = (
    ("enqueue", "enqueue_chat (studychat/chat/task_queue.py"),
    ("flask", "wsgi_app (flask/app.py"),
    ("parse", "__next__ (gunicorn/http/parser.py"),
)


def test_a_stack_belongs_to_the_first_part_it_passes_through():
    stacks = list(parse_raw(SERVED))
    assert [phase_of(frames, PARTS) for frames in stacks] == ["parse", "enqueue", "flask", OTHER]


def test_shares_by_part_and_by_library_count_every_sample_once():
    stacks = parse_raw(SERVED)
    by_part = dict(shares_by(stacks, lambda frames: phase_of(frames, PARTS)))
    assert by_part == pytest.approx({"enqueue": 0.4, "parse": 0.3, "flask": 0.2, OTHER: 0.1})
    by_library = dict(shares_by(stacks, lambda frames: library_of(frames[-1])))
    assert by_library == pytest.approx(
        {"redis": 0.4, "gunicorn": 0.3, "studychat": 0.2, "gevent": 0.1}
    )
    assert library_of("<module> (worker.py:3)") == "worker"


def test_report_gives_each_part_of_the_web_in_ms_once_the_cpu_is_known(tmp_path):
    raw = [
        "handle (gunicorn/workers/base_async.py:38);"
        "LeanPolls._lean (studychat/web/lean_polls.py:113) 3",
        "handle (gunicorn/workers/base_async.py:38);Flask.wsgi_app (flask/app.py:1500) 1",
    ]
    profiler = Profiler({"web": 1, "worker": 2}, tmp_path, "spread-100")
    profiler.raw_path("web").write_text("\n".join(raw))  # py-spy wrote nothing for the worker
    profiler.write_reports()
    report = tmp_path / "spread-100-web.top.txt"
    assert "   75.0%  polls answered in front of Flask" in report.read_text()
    profiler.add_costs({"web": 4.0, "worker": 3.0})
    text = report.read_text()
    assert "by part of the work (of 4.00 ms per answer):" in text
    assert "   75.0%   3.00 ms  polls answered in front of Flask" in text
    assert "   25.0%   1.00 ms  the chat: Flask and the rest of the view" in text
    assert not (tmp_path / "spread-100-worker.top.txt").exists()


@pytest.mark.parametrize(
    "function", [function for phases in PHASES.values() for _, function in phases]
)
def test_every_part_names_a_function_that_exists(function):
    """A renamed function would leave its part empty and its samples counted as other."""
    qualname, _, path = function.partition(" (")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    target: object = module
    for name in qualname.split("."):
        target = getattr(target, name)
    assert callable(target)
