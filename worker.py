"""The worker process: `python worker.py` runs chat jobs from the Redis queue."""

from __future__ import annotations

import logging
import sys

from rq import Worker

import jobs
from exceptions import MissingSettings
from logging_setup import configure_logging
from settings import load_dotenv_file, load_settings
from task_queue import QUEUE_NAME, SERIALIZER, make_redis

logger = logging.getLogger(__name__)


def main() -> int:
    """Start the worker, or refuse to when settings are missing."""
    load_dotenv_file()
    configure_logging()
    try:
        settings = load_settings()
    except MissingSettings as error:
        print(f"Refusing to start: {error}", file=sys.stderr, flush=True)
        return 1
    # Build the model client before any job runs, so jobs share it.
    jobs.model_client()
    connection = make_redis(settings["REDIS_URL"])
    worker = Worker([QUEUE_NAME], connection=connection, serializer=SERIALIZER)
    logger.info("worker started: queue %s", QUEUE_NAME)
    worker.work(logging_level=settings["LOG_LEVEL"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
