"""A worker's job metrics summed in memory: the same totals in Redis, in one write a second."""

from __future__ import annotations

import pytest
import redis
from redis import Redis

from studychat.chat import job_metrics
from studychat.chat.job_metrics import FAILED, FINISHED, JobSample, read_minutes, read_totals
from studychat.chat.metrics_tally import MetricsTally, TallyWriter
from tests.support.polling import wait_for

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000.0  # a fixed moment, on a minute boundary
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
SAMPLES = [
    JobSample(FINISHED, upstream_s=0.3, turn_s=0.4, attempts=1, usage=USAGE),
    JobSample(FINISHED, upstream_s=5.0, turn_s=5.5, attempts=2, usage=USAGE),
    JobSample(FAILED, upstream_s=70.0, turn_s=71.0, attempts=3, usage=None),
    JobSample(FINISHED, upstream_s=0.31, turn_s=None, attempts=1, usage=USAGE),
]


def tallied(*samples: JobSample, now: float = NOW) -> MetricsTally:
    tally = MetricsTally()
    for sample in samples:
        tally.add(sample, now=now)
    return tally


def calls(connection: Redis, command: str) -> int:
    stats = connection.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def written(tally: MetricsTally, connection: Redis) -> bool:
    """Whether a write went through (the first after a restart may meet a dead connection)."""
    try:
        return tally.write(connection) > 0
    except redis.ConnectionError:
        return False


def test_summed_jobs_leave_the_totals_that_one_write_per_job_leaves(own_redis):
    per_job, summed = (Redis.from_url(own_redis.url.removesuffix("/0") + f"/{db}") for db in (1, 2))
    for sample in SAMPLES:
        with per_job.pipeline(transaction=True) as pipeline:
            job_metrics.record(pipeline, sample, now=NOW)
            pipeline.execute()
    assert tallied(*SAMPLES).write(summed) > 0

    assert read_totals(summed) == read_totals(per_job)
    assert read_totals(summed).jobs == {FINISHED: 3, FAILED: 1}
    assert read_minutes(summed, 2, NOW) == read_minutes(per_job, 2, NOW)
    assert read_minutes(summed, 1, NOW)[0].chats == 4
    minute_key = job_metrics.MINUTE_PREFIX + str(job_metrics.minute_of(NOW))
    assert 0 < summed.ttl(minute_key) <= job_metrics.MINUTE_TTL_S


def test_a_hundred_jobs_cost_one_transaction_of_a_few_commands(connection):
    tally = tallied(*(SAMPLES * 25))
    increments_before = calls(connection, "hincrby") + calls(connection, "hincrbyfloat")
    tally.write(connection)
    increments = (
        calls(connection, "hincrby") + calls(connection, "hincrbyfloat") - increments_before
    )
    # One per counter the jobs touched, where writing them job by job takes ten per job.
    assert increments <= 20
    assert read_totals(connection).jobs == {FINISHED: 75, FAILED: 25}
    assert tally.write(connection) == 0  # written once: nothing left to add


def test_sums_that_could_not_be_written_are_kept_for_the_next_write(own_redis):
    connection = Redis.from_url(own_redis.url)
    tally = tallied(*SAMPLES[:2])
    own_redis.stop()
    with pytest.raises(redis.ConnectionError):
        tally.write(connection)
    tally.add(SAMPLES[2], now=NOW)  # a job that ends during the outage
    own_redis.restart()

    wait_for(lambda: written(tally, connection), timeout=30)
    totals = read_totals(connection)
    assert totals.jobs == {FINISHED: 2, FAILED: 1}
    assert totals.retries == 3
    assert totals.tokens == {"prompt": 20, "completion": 10, "total": 30}


def test_the_writer_writes_every_second_and_once_more_when_stopped(connection):
    tally = MetricsTally()
    writer = TallyWriter(tally, connection, every_s=0.2)
    writer.start()
    tally.add(SAMPLES[0])
    wait_for(lambda: read_totals(connection).jobs[FINISHED] == 1, timeout=10)
    writer.stop()

    # What a job adds after the last scheduled write is written by stop().
    lazy = TallyWriter(tally, connection, every_s=3600)
    lazy.start()
    tally.add(SAMPLES[2])
    lazy.stop()
    assert read_totals(connection).jobs == {FINISHED: 1, FAILED: 1}
