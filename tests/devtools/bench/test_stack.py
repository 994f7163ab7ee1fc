"""Process trees and their memory and CPU, and the environment the benchmark gives its servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from devtools.bench.stack import UsageSampler, child_env, study_env, tree, tree_cpu, tree_rss


def test_tree_holds_the_process_and_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pids = {process.pid for process in tree(os.getpid())}
        assert {os.getpid(), child.pid} <= pids
        assert tree_rss(os.getpid()) > tree_rss(child.pid) > 0
    finally:
        child.kill()
        child.wait()
    assert tree(None) == [] and tree_rss(None) == 0


def test_a_tree_of_several_processes_holds_each_and_counts_each_once():
    sleepers = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(2)
    ]
    try:
        pids = [sleeper.pid for sleeper in sleepers]
        assert {process.pid for process in tree(pids)} == set(pids)
        # This process and its children: each child's time is counted once, as its own.
        assert tree_cpu([os.getpid(), *pids]) == pytest.approx(tree_cpu(os.getpid()), abs=0.05)
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


def test_tree_reaches_grandchildren_started_by_any_thread():
    # A child whose own child is started from a second thread, as a server's may be.
    code = (
        "import subprocess, sys, threading, time;"
        "threading.Thread(target=lambda: subprocess.Popen("
        "[sys.executable, '-c', 'import time; time.sleep(30)'])).start();"
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(tree(child.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = tree(child.pid)
        assert len(processes) == 2 and processes[0].pid == child.pid
        assert processes[1].ppid() == child.pid
    finally:
        for process in reversed(tree(child.pid)):
            process.kill()
        child.wait()


def test_sampler_reports_peak_memory_and_cpu_used_in_the_block():
    with UsageSampler({"me": os.getpid()}) as sampler:
        sum(i * i for i in range(2_000_000))  # some CPU to be seen
    assert sampler.usage.peak_rss_mb["me"] > 5
    assert 0 < sampler.usage.cpu_s["me"] < tree_cpu(os.getpid())


def test_children_get_only_the_benchmark_settings(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-developer-shell")
    env = child_env(study_env("redis://r", "mongodb://m", "http://u/v1"), {"WEB_CONCURRENCY": "3"})
    assert env["OPENAI_API_KEY"] == "sk-bench-not-a-real-key"
    assert env["OPENAI_BASE_URL"] == "http://u/v1" and env["WEB_CONCURRENCY"] == "3"
    # One client plays every participant: no limit, as issue 14 measured...
    assert env["CHAT_RATE_LIMIT"] == env["CHAT_RATE_LIMIT_PER_IP"] == ""
    # ...unless asked, and then one no run reaches.
    limited = study_env("redis://r", "mongodb://m", "http://u/v1", rate_limits=True)
    assert limited["CHAT_RATE_LIMIT"] == limited["CHAT_RATE_LIMIT_PER_IP"] == "100000/minute"
