"""Chat job metrics in Redis: what a worker adds per job, and how the web reads it back."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from studychat.chat import job_metrics
from studychat.chat.job_metrics import (
    FAILED,
    FINISHED,
    JobSample,
    bucket_for,
    read_minutes,
    read_totals,
)
from tests.support.chat_helpers import start_chats
from tests.support.polling import poll_answer, wait_for
from tests.support.upstream import control

pytestmark = pytest.mark.timeout(120)

NOW = 1_800_000_000.0  # a fixed moment, on a minute boundary


@pytest.fixture()
def connection(own_redis):
    client = Redis.from_url(own_redis.url)
    yield client
    client.close()


def record(connection: Redis, *samples: JobSample, now: float = NOW) -> None:
    with connection.pipeline(transaction=True) as pipeline:
        for sample in samples:
            job_metrics.record(pipeline, sample, now=now)
        pipeline.execute()


def test_a_value_falls_in_the_smallest_bucket_it_fits():
    assert bucket_for(0.1) == "0.25"
    assert bucket_for(0.25) == "0.25"
    assert bucket_for(0.26) == "0.5"
    assert bucket_for(3) == "4.0"
    assert bucket_for(10_000) == "+Inf"
    assert job_metrics.bound_label(math.inf) == "+Inf"


def test_seconds_since_reads_naive_and_aware_utc_times():
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert job_metrics.seconds_since(now - timedelta(seconds=4), now) == 4
    naive = datetime(2026, 1, 1, 12, 0, 0)
    assert job_metrics.seconds_since(naive, now) == 10
    assert job_metrics.seconds_since(None, now) is None


def test_recorded_jobs_add_up_to_counters_and_cumulative_histograms(connection):
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    record(
        connection,
        JobSample(FINISHED, upstream_s=0.3, turn_s=0.4, attempts=1, usage=usage),
        JobSample(FINISHED, upstream_s=5.0, turn_s=5.5, attempts=2, usage=usage),
        JobSample(FAILED, upstream_s=70.0, turn_s=71.0, attempts=3, usage=None),
    )
    totals = read_totals(connection)
    assert totals.jobs == {FINISHED: 2, FAILED: 1}
    assert totals.retries == 3
    assert totals.tokens == {"prompt": 20, "completion": 10, "total": 30}
    upstream = dict(totals.histograms[job_metrics.UPSTREAM].buckets)
    assert (upstream["0.25"], upstream["0.5"], upstream["8.0"], upstream["60.0"]) == (0, 1, 2, 2)
    assert upstream["120.0"] == upstream["+Inf"] == 3
    assert totals.histograms[job_metrics.UPSTREAM].count == 3
    assert totals.histograms[job_metrics.UPSTREAM].total == pytest.approx(75.3)
    assert totals.histograms[job_metrics.TURN].total == pytest.approx(76.9)


def test_totals_of_an_empty_redis_are_zero(connection):
    totals = read_totals(connection)
    assert totals.jobs == {FINISHED: 0, FAILED: 0}
    assert totals.histograms[job_metrics.TURN].count == 0


def test_minutes_count_chats_and_errors_and_are_kept_a_day(connection):
    finished = JobSample(FINISHED, upstream_s=1, turn_s=1, attempts=1, usage=None)
    failed = JobSample(FAILED, upstream_s=1, turn_s=1, attempts=1, usage=None)
    record(connection, finished, finished, failed, now=NOW - 120)
    record(connection, finished, now=NOW + 30)
    minutes = read_minutes(connection, 5, now=NOW + 30)
    assert [m.start for m in minutes] == [NOW - 240, NOW - 180, NOW - 120, NOW - 60, NOW]
    assert [(m.chats, m.errors) for m in minutes] == [(0, 0), (0, 0), (3, 1), (0, 0), (1, 0)]
    assert job_metrics.summed(minutes) == (4, 1)
    ttl = connection.ttl(job_metrics.MINUTE_PREFIX + str(int(NOW // 60)))
    assert 24 * 3600 < ttl <= job_metrics.MINUTE_TTL_S


def test_the_worker_counts_answers_failures_retries_and_tokens_within_a_second(
    own_app, own_stack_env, start_worker, upstream, connection
):
    start_worker(own_stack_env)
    client = own_app.test_client()
    control(upstream, {"faults": [{"status": 500}]})  # answered on its second attempt
    (answered,) = start_chats(client, 1)
    answer = poll_answer(client, answered, timeout=60)
    control(upstream, {"faults": [{"status": 400}]})  # refused for good
    (refused,) = start_chats(client, 1)
    assert poll_answer(client, refused, timeout=60).status_code == 502
    # The worker sums its jobs' counts and writes them once a second (metrics_tally).
    wait_for(lambda: sum(read_totals(connection).jobs.values()) == 2, timeout=5)
    totals = read_totals(connection)
    assert answer.status_code == 200
    assert totals.jobs == {FINISHED: 1, FAILED: 1}
    assert totals.retries == 1
    usage = answer.get_json()["response"]["usage"]
    assert totals.tokens["total"] == usage["total_tokens"] > 0
    assert totals.tokens["completion"] == usage["completion_tokens"]
    assert totals.histograms[job_metrics.UPSTREAM].count == 2
    assert totals.histograms[job_metrics.TURN].count == 2
    assert job_metrics.summed(read_minutes(connection, 2)) == (2, 1)


def test_a_worker_stopped_for_a_deploy_writes_the_counts_of_its_last_jobs(
    own_app, own_stack_env, start_worker, connection
):
    worker = start_worker(own_stack_env)
    client = own_app.test_client()
    job_ids = start_chats(client, 3)
    assert all(poll_answer(client, job_id, timeout=60).status_code == 200 for job_id in job_ids)
    assert worker.stop() == 0  # SIGTERM at once, as a deploy sends it
    assert read_totals(connection).jobs == {FINISHED: 3, FAILED: 0}
    assert job_metrics.summed(read_minutes(connection, 2)) == (3, 0)


def test_rq_stock_worker_counts_each_job_with_its_answer(
    own_app, own_stack_env, start_worker, connection
):
    start_worker(own_stack_env, "--stock")
    client = own_app.test_client()
    (job_id,) = start_chats(client, 1)
    # Its job runs in a process of its own: the counts go with the answer, readable with it.
    assert poll_answer(client, job_id, timeout=60).status_code == 200
    assert read_totals(connection).jobs == {FINISHED: 1, FAILED: 0}
