"""The process-wide clients (Redis, queue, MongoDB), made once by the app factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app
from pymongo import MongoClient
from pymongo.database import Database
from redis import Redis
from rq import Queue

from studychat.chat.task_queue import make_queue, make_redis
from studychat.settings import Settings
from studychat.store.database import make_mongo_client
from studychat.study.definition import Study, load_configured_study
from studychat.web.job_updates import JobUpdates

logger = logging.getLogger(__name__)

EXTENSION_KEY = "study_chat"


@dataclass(frozen=True)
class Services:
    """Clients shared by every request of one web process."""

    settings: Settings
    redis: Redis
    queue: Queue
    mongo: MongoClient
    db: Database
    study: Study | None
    job_updates: JobUpdates


def init_services(app: Flask, settings: Settings) -> Services:
    """Create the clients once and attach them to `app`."""
    connection = make_redis(
        settings.REDIS_URL, settings.REDIS_SSL_CERT_REQS, settings.REDIS_MAX_CONNECTIONS
    )
    mongo = make_mongo_client(settings.DATABASE_URL)
    made = Services(
        settings=settings,
        redis=connection,
        queue=make_queue(connection),
        mongo=mongo,
        db=mongo[settings.DATABASE_NAME],
        study=load_configured_study(settings),
        job_updates=JobUpdates(connection),
    )
    if made.study is not None:
        logger.info(
            "study %s from %s, sha256 %s", made.study.name, settings.STUDY_FILE, made.study.hash
        )
    app.extensions[EXTENSION_KEY] = made
    return made


def services(app: Flask | None = None) -> Services:
    """The clients and settings of `app`, by default the current one."""
    return (app or current_app).extensions[EXTENSION_KEY]


def close_services(app: Flask) -> None:
    """Release the clients' connections (tests build many apps)."""
    made: Services = app.extensions.pop(EXTENSION_KEY)
    made.job_updates.close()
    made.redis.close()
    made.mongo.close()
