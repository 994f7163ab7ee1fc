"""`make bench`: many simulated participants against the whole stack on real servers.

    python -m devtools.bench --participants 50,100,200,500 --turns 5 --latency 2 \\
        --workers concurrent,stock --scenarios spread,together,burst,long-poll

For each worker kind, each load shape (devtools.bench.scenarios: participants spread
over a turn, starting together, a burst of first messages, long polls) and each N it
starts a fresh gunicorn web and worker against real Redis, SecantusDB and a fake OpenAI
upstream that answers after `--latency` seconds (+/- `--jitter`), lets N participants
chat and poll (devtools.bench.load_client), and prints answers per second against the
ideal N / (latency + poll/2), chat-to-answer percentiles and the slowest answer, HTTP
requests per answer, errors, the peak memory and CPU of every process, and which goals
each run met. It writes results.json, results.md and chart.png to `--out`. Stock runs (RQ's forking
worker, one job at a time) are slow by design: they stop at `--stock-time-limit` and
report what they achieved until then. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devtools.bench.chart import draw_chart
from devtools.bench.load_client import LoadPlan, LoadResult, simulate
from devtools.bench.machine_speed import reference_ms
from devtools.bench.profile import Profiler
from devtools.bench.repeats import fold_repeats, repeats_line
from devtools.bench.report import (
    common_window,
    cpu_between,
    cpu_table,
    fits_machine,
    markdown_table,
    scenario_label,
    speedups,
    summarise,
)
from devtools.bench.scenarios import (
    CPU_GOAL_N,
    CPU_GOAL_RUNS,
    DEFAULT_SCENARIOS,
    SCENARIOS,
    Scenario,
    goals,
)
from devtools.bench.stack import (
    BenchStack,
    Usage,
    UsageSampler,
    generator_priority,
    wait_until_quiet,
)
from devtools.servers import REPO_ROOT
from studychat.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PARTICIPANTS = "50,100,200,500"
DEFAULT_STOCK_PARTICIPANTS = "50"
ENV_KNOBS = ("WORKER_CONCURRENCY", "WORKER_TAKE_WINDOW_MS", "WEB_CONCURRENCY", "WEB_CONNECTIONS")
# The study that --sessions runs: the example a team starts from (two conditions).
BENCH_STUDY = REPO_ROOT / "study.example.yaml"


def parse_counts(text: str) -> list[int]:
    """'50,100,200' -> [50, 100, 200]; every count must be positive."""
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give positive participant counts, e.g. 50,100,200")
    return counts


def parse_runs(text: str) -> int:
    """'5' -> 5: how many times a load runs, at least once."""
    runs = int(text)
    if runs < 1:
        raise argparse.ArgumentTypeError("give how many runs, 1 or more")
    return runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--participants", type=parse_counts, default=parse_counts(DEFAULT_PARTICIPANTS))
    add(
        "--stock-participants",
        type=parse_counts,
        default=parse_counts(DEFAULT_STOCK_PARTICIPANTS),
        help="participant counts for the stock worker (it is slow)",
    )
    add("--workers", default="concurrent,stock", help="worker kinds: concurrent, stock")
    add(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"load shapes, of {DEFAULT_SCENARIOS} (stock runs the spread one only)",
    )
    add("--turns", type=int, default=5, help="chat turns per participant (spread load)")
    add(
        "--cpu-runs",
        type=parse_runs,
        default=CPU_GOAL_RUNS,
        metavar="K",
        help=f"runs of the spread load at N={CPU_GOAL_N}; the median one is reported and"
        " held to the CPU goal",
    )
    add("--latency", type=float, default=2.0, help="upstream seconds per answer")
    add("--jitter", type=float, default=0.25, help="upstream latency varies by +/- this")
    add("--poll", type=float, default=0.5, help="seconds between /check_response polls")
    add(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="long poll: /check_response waits up to S s (its 'wait' field), no 0.5 s polling",
    )
    add(
        "--stagger",
        type=float,
        metavar="S",
        help="participants start over S seconds (default: one turn, latency + poll)",
    )
    add("--time-limit", type=float, default=180.0, help="cut-off of a concurrent run (s)")
    add("--stock-time-limit", type=float, default=60.0, help="cut-off of a stock run (s)")
    add("--worker-concurrency", type=int, help="WORKER_CONCURRENCY (default: settings.py)")
    add(
        "--worker-processes",
        type=int,
        default=1,
        help="concurrent worker processes on the queue (their CPU and memory are summed)",
    )
    add("--out", type=Path, default=REPO_ROOT / "bench-results", help="where results go")
    add(
        "--logs",
        type=Path,
        default=REPO_ROOT / "var" / "bench",
        help="server logs, turns and profiles go to a new folder in here",
    )
    add("--no-chart", action="store_true", help="skip chart.png")
    add("--profile", action="store_true", help="py-spy web and worker (see --logs)")
    add(
        "--rate-limits",
        action="store_true",
        help="check rate limits on every chat (never reached), to measure what they cost",
    )
    add(
        "--sessions",
        action="store_true",
        help="participants open a study session (STUDY_FILE: study.example.yaml) and chat"
        " in it, instead of sending the legacy API's bodies",
    )
    add(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run wait up to S seconds for the machine to be idle",
    )
    return parser.parse_args(argv)


def plan_runs(args: argparse.Namespace) -> list[tuple[str, Scenario, int]]:
    """(worker kind, load shape, N) of every run, in order."""
    kinds = _names(args.workers, {"concurrent", "stock"}, "worker kind")
    shapes = [SCENARIOS[name] for name in _names(args.scenarios, set(SCENARIOS), "scenario")]
    runs = []
    for kind in kinds:
        for shape in shapes:
            if kind == "stock" and shape.name != "spread":
                continue  # one job at a time: the other loads would only hit the time limit
            counts = args.stock_participants if kind == "stock" else args.participants
            for n in shape.participants or counts:
                runs.extend([(kind, shape, n)] * times_run(args, kind, shape, n))
    return runs


def times_run(args: argparse.Namespace, kind: str, shape: Scenario, participants: int) -> int:
    """How many times one load runs: the CPU goal's --cpu-runs times, any other once."""
    held_to_cpu_goal = (kind, shape.name, participants) == ("concurrent", "spread", CPU_GOAL_N)
    return args.cpu_runs if held_to_cpu_goal else 1


def _names(text: str, known: set[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = set(names) - known
    if unknown:
        raise SystemExit(f"unknown {what}(s): {', '.join(sorted(unknown))}")
    return names


def env_overrides(args: argparse.Namespace, shape: Scenario) -> dict[str, str]:
    """Tuning knobs for web and worker: the command line's, the load's, else this environment's."""
    overrides = {knob: os.environ[knob] for knob in ENV_KNOBS if knob in os.environ}
    concurrency = args.worker_concurrency or shape.worker_concurrency
    if concurrency:
        overrides["WORKER_CONCURRENCY"] = str(concurrency)
    if args.sessions:
        overrides["STUDY_FILE"] = str(BENCH_STUDY)
    return overrides


def start_window(args: argparse.Namespace, shape: Scenario = SCENARIOS["spread"]) -> float:
    """Seconds over which participants start: the shape's, --stagger, else one turn.

    With no reading time each next turn starts the moment its answer arrives, so the
    phases participants start with last the whole run. Starts spread over less than
    one turn keep them bunched, a herd that real participants (minutes apart, reading
    and typing) never form: at N=200, a 1 s window gave 79 % of the ideal rate where one
    turn's window gave 96 %.
    """
    if shape.stagger_s is not None:
        return shape.stagger_s
    if shape.name == "spread" and args.stagger is not None:
        return args.stagger
    return args.latency + args.poll


def make_plan(
    args: argparse.Namespace, kind: str, shape: Scenario, participants: int, attempt: int = 1
) -> LoadPlan:
    """What the participants of one run do, and when the run is cut off.

    A load's second and later runs get run ids (and so participant ids) of their own.
    """
    run_id = f"{kind}-{shape.name}-{participants}" + (f"-{attempt}" if attempt > 1 else "")
    limit = args.stock_time_limit if kind == "stock" else args.time_limit
    return LoadPlan(
        participants=participants,
        turns=shape.turns or args.turns,
        poll_s=args.poll,
        stagger_s=start_window(args, shape),
        request_timeout_s=min(30.0, limit),
        deadline_s=limit,
        run_id=run_id,
        wait_s=shape.wait_s if shape.wait_s is not None else args.wait,
        sessions=args.sessions,
    )


def one_run(
    stack: BenchStack,
    args: argparse.Namespace,
    kind: str,
    shape: Scenario,
    participants: int,
    attempt: int = 1,
) -> dict[str, Any]:
    """Start web and worker, let `participants` chat, return every figure of the run."""
    plan = make_plan(args, kind, shape, participants, attempt)
    busy_before = wait_until_quiet(args.wait_quiet) if args.wait_quiet else None
    load_before = os.getloadavg()[0]
    speed_before = reference_ms()
    overrides = env_overrides(args, shape)
    processes = args.worker_processes if kind == "concurrent" else 1
    with stack.service(kind, overrides, processes) as (web, workers):
        worker_pids = [worker.pid for worker in workers if worker.pid is not None]
        pids = {"web": web.pid, "worker": worker_pids, **stack.shared_pids()}
        spy = profiler(args, plan.run_id, web.pid, workers[0].pid)
        with UsageSampler(pids) as sampler, spy:
            before = own_cpu_s()
            commands_before, calls_before, reads_before = stack.redis_commands()
            mongo_before = stack.mongo_operations()
            memory_before = stack.redis_memory_bytes()
            with generator_priority():
                result = simulate(web.url, plan)
            sampler.usage.cpu_s["bench"] = own_cpu_s() - before
            commands_after, calls_after, reads_after = stack.redis_commands()
            commands, calls = commands_after - commands_before, calls_after - calls_before
            reads = reads_after - reads_before
            mongo_ops = stack.mongo_operations() - mongo_before
            memory = stack.redis_memory_bytes() - memory_before
        upstream = stack.upstream_call("/_stats")
    write_turns(result, args.logs / f"{plan.run_id}-turns.jsonl")
    row = {"worker": kind, "scenario": shape.name, **summarise(result, args.latency)}
    row.update(jitter_s=args.jitter, stagger_s=plan.stagger_s, wait_s=plan.wait_s)
    row["sessions"] = plan.sessions
    row.update(process_figures(sampler.usage, row["answers"]))
    row.update(window_cpu_figures(sampler.usage, result, row["window_answers"]))
    if isinstance(spy, Profiler):
        spy.add_costs(row["cpu_ms_per_answer"])
    row["redis_commands_per_answer"] = commands / row["answers"] if row["answers"] else None
    row["redis_calls_per_answer"] = calls_per_answer(calls, row["answers"])
    row["redis_reads_per_answer"] = reads / row["answers"] if row["answers"] else None
    row["mongo_ops_per_answer"] = calls_per_answer(mongo_ops, row["answers"])
    # What each answer leaves in Redis for RESULT_TTL_S: what a hosted plan must hold.
    row["redis_kb_per_answer"] = memory / 1024 / row["answers"] if row["answers"] else None
    row["worker_processes"] = processes
    row["load_average_before"] = load_before
    row["machine_busy_before"] = busy_before
    row["reference_ms"] = speed_before
    # Model calls at once: the worker's concurrency at work (WORKER_CONCURRENCY caps it).
    row["upstream_max_in_flight"] = upstream.get("max_in_flight")
    row["worker_concurrency"] = int(
        overrides.get("WORKER_CONCURRENCY", Settings.model_fields["WORKER_CONCURRENCY"].default)
    )
    row["targets"] = goals(row)
    return row


def process_figures(usage: Usage, answers: int) -> dict[str, Any]:
    """Peak memory of web and worker, CPU of every process, and how busy the machine was."""
    return {
        "web_peak_rss_mb": usage.peak_rss_mb["web"],
        "worker_peak_rss_mb": usage.peak_rss_mb["worker"],
        "cpu_s": usage.cpu_s,
        "machine_cpu_busy": usage.machine_busy_s / (usage.elapsed_s * (os.cpu_count() or 1)),
        "others_cpu_s": max(0.0, usage.machine_busy_s - sum(usage.cpu_s.values())),
    }


def window_cpu_figures(usage: Usage, result: LoadResult, answers: int) -> dict[str, Any]:
    """CPU per answer over the same window as the rate, and the cores the two demand.

    Every process of the run shares the machine's cores (the generator and the fake
    upstream too), so all of them count against the cores.
    """
    start, end = common_window(result)
    per_answer = per_answer_ms(cpu_between(usage.cpu_timeline, start, end), answers)
    rate = answers / (end - start) if end > start else 0.0
    return {
        "run_cpu_ms_per_answer": per_answer_ms(usage.cpu_s, result_answers(result)),
        "cpu_ms_per_answer": per_answer,
        **fits_machine(rate, per_answer.get("all", 0.0), os.cpu_count() or 1),
    }


def calls_per_answer(calls: Counter[str], answers: int) -> dict[str, float]:
    """Calls per answer of each Redis command (or MongoDB operation), the most called first."""
    if not answers:
        return {}
    return {name: round(count / answers, 2) for name, count in calls.most_common()}


def result_answers(result: LoadResult) -> int:
    """Answers of the whole run."""
    return sum(1 for turn in result.turns if turn.answered is not None)


def profiler(
    args: argparse.Namespace, run_id: str, web_pid: int | None, worker_pid: int | None
) -> contextlib.AbstractContextManager[object]:
    """py-spy on web and worker when --profile was given, else nothing."""
    if not args.profile:
        return contextlib.nullcontext()
    return Profiler({"web": web_pid, "worker": worker_pid}, args.logs / "profiles", run_id)


def write_turns(result: LoadResult, path: Path) -> None:
    """Every turn of a run as JSON lines (seconds from the run's start), for a closer look."""
    with path.open("w") as out:
        for turn in result.turns:
            record = asdict(turn)
            record["started"] -= result.began
            if turn.answered is not None:
                record["answered"] -= result.began
            out.write(json.dumps(record) + "\n")


def per_answer_ms(cpu_s: Mapping[str, float], answers: int) -> dict[str, float]:
    """Milliseconds of CPU per answer for each process, and in all."""
    if not answers:
        return {}
    shares = {name: 1000 * seconds / answers for name, seconds in cpu_s.items()}
    return {**shares, "all": sum(shares.values())}


def own_cpu_s() -> float:
    """CPU seconds this process (the load generator) has used, its servers not included."""
    times = os.times()
    return times.user + times.system


def print_run(row: Mapping[str, Any]) -> None:
    """One line per run while the benchmark goes on."""
    cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in row["cpu_ms_per_answer"].items())
    cut = " (cut off at the time limit)" if row["cut_off"] else ""
    worker = row["worker"] + (f" x{row['worker_processes']}" if row["worker_processes"] > 1 else "")
    print(
        f"{worker:>10} {scenario_label(row):>9} N={row['participants']:<4} "
        f"{row['answers_per_s']:.1f} answers/s = {row['ratio_to_ideal']:.0%} of ideal, "
        f"p99 {row['p99_s'] or 0:.2f} s, slowest {row['max_s'] or 0:.2f} s, "
        f"{row['errors']} errors{cut}; needs {row['cores_needed']:.2f} cores"
        f"{'' if row['fits_machine'] else ' (MORE THAN THE MACHINE HAS: check the figures)'}; "
        f"machine {row['machine_cpu_busy']:.0%} busy "
        f"({row['others_cpu_s']:.0f} CPU s not ours), reference loop {row['reference_ms']:.0f} ms; "
        f"CPU ms per answer: {cpu}; Redis commands per answer "
        f"{row['redis_commands_per_answer'] or 0:.1f} in {row['redis_reads_per_answer'] or 0:.1f} "
        f"reads, Redis kB held per answer "
        f"{row['redis_kb_per_answer'] or 0:.1f}, MongoDB operations per answer "
        f"{sum(row['mongo_ops_per_answer'].values()):.2f}",
        flush=True,
    )


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def command_line(argv: Sequence[str] | None) -> str:
    """The command that reproduces the run."""
    given = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python -m devtools.bench", *given])


def summary_markdown(report: Mapping[str, Any]) -> str:
    """results.md: the command, the machine, the table, speed-ups and targets."""
    rows = report["runs"]
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{report['command']}`  ",
        f"Measured {report['environment']['date']} on {report['environment']['cpus']} CPUs, "
        f"Python {report['environment']['python']}; load average before each run: "
        + ", ".join(f"{row['load_average_before']:.2f}" for row in rows)
        + ".",
        "",
        markdown_table(rows),
        "",
        "CPU milliseconds per answer, by process (bench: the load generator); machine busy:"
        " all cores, anyone's work; others' CPU s: what was not this benchmark's; reference"
        " ms: CPU time of a fixed Python loop just before the run (the machine's speed at"
        " that moment; devtools/bench/machine_speed.py).",
        "",
        cpu_table(rows),
        "",
    ]
    for n, ratio in sorted(report["speedups"].items()):
        lines.append(f"- N={n}: the concurrent worker answers {ratio:.0f}x as fast as stock RQ.")
    for row in rows:
        line = repeats_line(f"{scenario_label(row)} N={row['participants']}", row)
        if line:
            lines.append(line)
    for row in rows:
        if row["targets"]:
            met = ", ".join(
                f"{name}: {'met' if ok else 'MISSED'}" for name, ok in row["targets"].items()
            )
            lines.append(f"- Goals of {scenario_label(row)} N={row['participants']}: {met}.")
    return "\n".join(lines) + "\n"


def write_outputs(report: Mapping[str, Any], out: Path, chart: bool) -> None:
    """results.json, results.md and (unless told not to) chart.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "results.md").write_text(summary_markdown(report))
    if chart:
        draw_chart(report["runs"], out / "chart.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every planned run and write the results."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    runs = plan_runs(args)
    # A fresh folder per benchmark: nothing of an earlier one is overwritten or deleted.
    args.logs = args.logs / time.strftime("%Y%m%d-%H%M%S")
    rows: list[dict[str, Any]] = []
    attempts: Counter[tuple[str, str, int]] = Counter()
    with BenchStack(args.logs, args.latency, args.jitter, args.rate_limits) as stack:
        for kind, shape, participants in runs:
            attempts[kind, shape.name, participants] += 1
            attempt = attempts[kind, shape.name, participants]
            rows.append(one_run(stack, args, kind, shape, participants, attempt))
            print_run(rows[-1])
    rows = fold_repeats(rows)
    report = {
        "command": command_line(argv),
        "environment": environment(),
        "runs": rows,
        "speedups": speedups(rows),
    }
    write_outputs(report, args.out, chart=not args.no_chart)
    print()
    print(summary_markdown(report))
    print(f"Written to {args.out}; server logs in {args.logs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
