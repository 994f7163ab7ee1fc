"""Chat job metrics kept in Redis, so that any web process reports what every worker did.

Web and worker run on different machines (Heroku dynos), so the worker cannot leave its
counts in a local directory the web reads. Instead each job's counts go to one Redis
hash, never before its answer is stored: summed with those of the other jobs of its
second by `python worker.py` (metrics_tally), or on the transaction that stores its
answer under RQ's stock worker (jobs._finish). Counts are plain HINCRBY/HINCRBYFLOAT, so
any number of workers add to them at once without losing any.

A histogram is kept as one counter per bucket (the smallest bound the value fits), and
made cumulative when read, as Prometheus expects. Per-minute counters of chats and
errors (one small hash per minute, kept a day) feed the admin page's "last hour" figures
and its chart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.job import Job

from studychat.chat.budgets import usage_tokens

TOTALS_KEY = "metrics:jobs"
MINUTE_PREFIX = "metrics:minute:"
# A minute's counters outlive the day the admin page can chart by an hour.
MINUTE_TTL_S = 25 * 3600

FINISHED = "finished"
FAILED = "failed"
OUTCOMES = (FINISHED, FAILED)
TOKEN_KINDS = ("prompt", "completion", "total")
# Seconds. A model answer takes from a fraction of a second to a minute or two.
LATENCY_BOUNDS: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, math.inf)
UPSTREAM = "upstream"  # the model call, retries included
TURN = "turn"  # from POST /chat queuing the job to its answer being readable
HISTOGRAMS = (UPSTREAM, TURN)


def bound_label(bound: float) -> str:
    """A bucket bound as Prometheus writes it: `0.25`, `1.0`, `+Inf`."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def bucket_for(seconds: float, bounds: Sequence[float] = LATENCY_BOUNDS) -> str:
    """The label of the smallest bound that `seconds` does not exceed."""
    return bound_label(next(bound for bound in bounds if seconds <= bound))


@dataclass(frozen=True)
class JobSample:
    """What one finished or failed chat job adds to the metrics."""

    outcome: str
    upstream_s: float | None
    turn_s: float | None
    attempts: int
    usage: Mapping[str, Any] | None


# A job's counts: (Redis key, hash field) -> what to add. Integers are HINCRBY, floats
# (the histograms' sums) HINCRBYFLOAT; the counts of many jobs add up (merge_into).
Increments = dict[tuple[str, str], int | float]


def increments_of(sample: JobSample, now: float | None = None) -> Increments:
    """What one job adds to the totals and to its minute's counters."""
    counts: Increments = {(TOTALS_KEY, f"jobs:{sample.outcome}"): 1}
    counts[TOTALS_KEY, "retries"] = max(sample.attempts - 1, 0)
    for field, value in _token_counts(sample.usage).items():
        counts[TOTALS_KEY, field] = value
    for name, seconds in ((UPSTREAM, sample.upstream_s), (TURN, sample.turn_s)):
        if seconds is not None and seconds >= 0:
            counts[TOTALS_KEY, f"{name}:bucket:{bucket_for(seconds)}"] = 1
            counts[TOTALS_KEY, f"{name}:sum"] = float(seconds)
    minute_key = MINUTE_PREFIX + str(minute_of(now if now is not None else time.time()))
    counts[minute_key, "chats"] = 1
    counts[minute_key, "errors"] = int(sample.outcome == FAILED)
    return counts


def merge_into(total: Increments, counts: Increments) -> None:
    """Add `counts` to `total`, field by field."""
    for field, value in counts.items():
        total[field] = total.get(field, 0) + value


def add_increments(pipeline: Pipeline, counts: Increments) -> None:
    """Queue `counts` on `pipeline`, and a day's lifetime for each minute's counters."""
    for (key, field), value in counts.items():
        if not value:
            continue
        if isinstance(value, float):
            pipeline.hincrbyfloat(key, field, value)
        else:
            pipeline.hincrby(key, field, value)
    for key in sorted({key for key, _ in counts if key.startswith(MINUTE_PREFIX)}):
        pipeline.expire(key, MINUTE_TTL_S)


def record(pipeline: Pipeline, sample: JobSample, now: float | None = None) -> None:
    """Queue the job's counts on `pipeline`, the one that stores its answer."""
    add_increments(pipeline, increments_of(sample, now))


def sample_of(
    job: Job,
    succeeded: bool,
    upstream_s: float | None,
    attempts: int | None,
    usage: Mapping[str, Any] | None,
) -> JobSample:
    """What a chat job that ended adds: its outcome, timings, retries and tokens."""
    return JobSample(
        outcome=FINISHED if succeeded else FAILED,
        upstream_s=upstream_s,
        turn_s=seconds_since(job.enqueued_at),
        attempts=attempts or 1,
        usage=usage,
    )


def seconds_since(moment: datetime | None, now: datetime | None = None) -> float | None:
    """Seconds from `moment` (RQ's times are UTC, naive or aware) to now; None without one."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - moment).total_seconds()


def _token_counts(usage: Mapping[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    counts = {"tokens:total": usage_tokens(usage)}
    for kind in ("prompt", "completion"):
        value = usage.get(f"{kind}_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            counts[f"tokens:{kind}"] = value
    return counts


def minute_of(timestamp: float) -> int:
    """The number of the minute (since the epoch) that `timestamp` falls in."""
    return int(timestamp // 60)


@dataclass(frozen=True)
class Histogram:
    """A latency histogram: the cumulative count at each bound, the sum and the count."""

    buckets: tuple[tuple[str, int], ...]
    total: float

    @property
    def count(self) -> int:
        """Observations in all buckets (the +Inf bucket's cumulative count)."""
        return self.buckets[-1][1]


@dataclass(frozen=True)
class JobTotals:
    """Every count the workers have added since the metrics began."""

    jobs: dict[str, int]
    retries: int
    tokens: dict[str, int]
    histograms: dict[str, Histogram]


def parse_totals(raw: Mapping[bytes | str, bytes | str]) -> JobTotals:
    """The totals in the hash as HGETALL returns it (missing fields count zero)."""
    fields = {_text(key): _text(value) for key, value in raw.items()}
    return JobTotals(
        jobs={outcome: int(fields.get(f"jobs:{outcome}", 0)) for outcome in OUTCOMES},
        retries=int(fields.get("retries", 0)),
        tokens={kind: int(fields.get(f"tokens:{kind}", 0)) for kind in TOKEN_KINDS},
        histograms={name: _histogram(fields, name) for name in HISTOGRAMS},
    )


def _histogram(fields: Mapping[str, str], name: str) -> Histogram:
    running, buckets = 0, []
    for bound in LATENCY_BOUNDS:
        label = bound_label(bound)
        running += int(fields.get(f"{name}:bucket:{label}", 0))
        buckets.append((label, running))
    return Histogram(buckets=tuple(buckets), total=float(fields.get(f"{name}:sum", 0.0)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_totals(connection: Redis) -> JobTotals:
    """The totals, in one round trip."""
    return parse_totals(connection.hgetall(TOTALS_KEY))


@dataclass(frozen=True)
class Minute:
    """Chat jobs that ended within one minute, and how many of them failed."""

    start: int  # unix time of the minute's first second
    chats: int
    errors: int


def read_minutes(connection: Redis, minutes: int, now: float | None = None) -> list[Minute]:
    """The last `minutes` minutes up to the current one, oldest first, in one round trip."""
    last = minute_of(now if now is not None else time.time())
    numbers = range(last - minutes + 1, last + 1)
    with connection.pipeline(transaction=False) as pipeline:
        for number in numbers:
            pipeline.hmget(MINUTE_PREFIX + str(number), "chats", "errors")
        answers = pipeline.execute()
    return [
        Minute(start=number * 60, chats=int(chats or 0), errors=int(errors or 0))
        for number, (chats, errors) in zip(numbers, answers, strict=True)
    ]


def summed(minutes: Iterable[Minute]) -> tuple[int, int]:
    """Chats and errors over `minutes`."""
    chats = errors = 0
    for minute in minutes:
        chats += minute.chats
        errors += minute.errors
    return chats, errors
