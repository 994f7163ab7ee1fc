"""The worker process: `python worker.py` runs chat jobs from the Redis queue.

`python worker.py --stock` runs RQ's stock forking worker instead (one job at a
time), for comparison in the benchmark.
"""

from __future__ import annotations

import argparse
import logging

from redis import Redis
from rq import Worker, get_current_job
from rq.worker import BaseWorker

from studychat.chat import jobs
from studychat.chat.metrics_tally import MetricsTally, TallyWriter
from studychat.chat.task_queue import QUEUE_NAME, SERIALIZER, make_redis
from studychat.gc_tuning import tune_garbage_collector
from studychat.logging_setup import configure_logging, set_context_source
from studychat.outage_watch import wait_for_redis
from studychat.settings import Settings
from studychat.startup import check_or_exit
from studychat.store.chat_log import ChatLogShipper
from studychat.store.database import make_mongo_client
from studychat.study.definition import load_configured_study
from studychat.worker.concurrent_worker import ConcurrentWorker

logger = logging.getLogger(__name__)


def build_worker(settings: Settings, connection: Redis, stock: bool) -> BaseWorker:
    """The worker that serves the chat queue."""
    # log_job_description=False: RQ's description of a job quotes the participant's message.
    if stock:
        return Worker(
            [QUEUE_NAME], connection=connection, serializer=SERIALIZER, log_job_description=False
        )
    return ConcurrentWorker(
        [QUEUE_NAME],
        connection=connection,
        serializer=SERIALIZER,
        log_job_description=False,
        concurrency=settings.WORKER_CONCURRENCY,
        job_monitoring_interval=settings.WORKER_HEARTBEAT_S,
        shutdown_grace_s=settings.WORKER_SHUTDOWN_GRACE_S,
        take_window_s=settings.WORKER_TAKE_WINDOW_MS / 1000,
    )


def main(argv: list[str] | None = None) -> int:
    """Start the worker, or refuse to when settings are missing."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stock", action="store_true", help="run RQ's stock worker")
    args = parser.parse_args(argv)
    settings = check_or_exit()
    study = load_configured_study(settings)
    configure_logging(settings.LOG_LEVEL)
    set_context_source("job_id", current_job_id)
    connection = make_redis(
        settings.REDIS_URL, settings.REDIS_SSL_CERT_REQS, settings.REDIS_MAX_CONNECTIONS
    )
    # Before any job runs, so that all jobs share one model client (and one tally).
    metrics = None if args.stock else start_metrics_writer(connection)
    jobs.init_jobs(settings, metrics.tally if metrics else None)
    # RQ's worker talks to Redis as it is built: a worker started during an outage waits.
    wait_for_redis(connection, "starting the worker")
    worker = build_worker(settings, connection, args.stock)
    shipper = start_chat_log_shipper(settings, connection, worker.name)
    logger.info("worker started: %s on queue %s", type(worker).__name__, QUEUE_NAME)
    if study is not None:
        logger.info("study %s from %s, sha256 %s", study.name, settings.STUDY_FILE, study.hash)
    tune_garbage_collector()
    worker.work(logging_level=settings.LOG_LEVEL)
    if metrics:
        metrics.stop()  # writes the counts of the last jobs
    shipper.stop()
    return 0


def current_job_id() -> str | None:
    """The id of the RQ job this thread is running, if any."""
    job = get_current_job()
    return job.id if job is not None else None


def start_metrics_writer(connection: Redis) -> TallyWriter:
    """Sum this process's job metrics and write them to Redis once a second.

    RQ's stock worker forks a process per job, whose sums would die with it: its jobs
    write their metrics with their answers.
    """
    writer = TallyWriter(MetricsTally(), connection)
    writer.start()
    return writer


def start_chat_log_shipper(settings: Settings, connection: Redis, name: str) -> ChatLogShipper:
    """Ship this process's chat transcripts to MongoDB in the background."""
    db = make_mongo_client(settings.DATABASE_URL)[settings.DATABASE_NAME]
    shipper = ChatLogShipper(connection, db, consumer=name)
    shipper.start()
    return shipper
