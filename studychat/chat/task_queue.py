"""The Redis connection and the RQ queue that carries chat jobs from web to worker."""

from __future__ import annotations

import uuid
from typing import Any

from redis import BlockingConnectionPool, Redis
from rq import Queue
from rq.serializers import JSONSerializer

from studychat.chat.answer_stream import UPDATES_META
from studychat.settings import Settings

QUEUE_NAME = "chat"
# Job arguments and results are plain JSON: readable in any dashboard, never unpickled.
SERIALIZER = JSONSerializer
CHAT_JOB = "studychat.chat.jobs.run_chat"


def tls_options(url: str, ssl_cert_reqs: str) -> dict[str, str]:
    """The certificate check of a rediss:// URL; nothing for plain redis:// (refused there)."""
    return {"ssl_cert_reqs": ssl_cert_reqs} if url.startswith("rediss://") else {}


def make_redis(url: str, ssl_cert_reqs: str = "required", max_connections: int = 50) -> Redis:
    """A pooled Redis client with timeouts, so an outage fails fast instead of hanging.

    At most `max_connections` connections: hosted Redis plans cap their clients, so a
    burst of requests waits briefly for a free connection instead of opening more.
    `ssl_cert_reqs` (required, optional, none) applies to rediss:// URLs only: redis-py
    refuses the option on plain connections. Heroku Redis needs none (self-signed).
    """
    tls = tls_options(url, ssl_cert_reqs)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=3,
        socket_timeout=5,
        health_check_interval=30,
        retry_on_timeout=False,
        **tls,
    )
    return Redis(connection_pool=pool)


def make_queue(connection: Redis) -> Queue:
    """The chat queue on `connection`."""
    return Queue(QUEUE_NAME, connection=connection, serializer=SERIALIZER)


def job_timeout(settings: Settings) -> int:
    """Seconds a chat job may run: every attempt at its timeout, plus backoff between them."""
    attempts = settings.LLM_MAX_RETRIES + 1
    return int(attempts * settings.LLM_TIMEOUT_S + attempts * 65)


def new_job_id() -> str:
    """A job id as RQ makes one (`str(uuid4())`), known before the job is enqueued."""
    return str(uuid.uuid4())


def enqueue_chat(
    queue: Queue,
    messages: list[dict],
    participant_id: str | None,
    settings: Settings,
    job_id: str | None = None,
    stream: bool = False,
    session: dict[str, Any] | None = None,
    received_at: str | None = None,
    updates_channel: str | None = None,
) -> str:
    """Put one chat turn on the queue (as `job_id` when given) and return its job id.

    `session` is a study session's turn (SessionTurn kwargs); legacy turns have none.
    `received_at` is when the web received the message (UTC ISO 8601).
    `updates_channel` is where the worker announces the job's writes (the queuing web
    process's: web/job_updates.py); without it, on answer_stream.UPDATES_CHANNEL.
    """
    kwargs: dict[str, Any] = {"messages": messages, "participant_id": participant_id}
    if received_at:
        kwargs["received_at"] = received_at
    if stream:
        kwargs["stream"] = True
    if session:
        kwargs["session"] = session
    # One transaction, one round trip: without a pipeline of ours RQ makes two (the
    # queue's name in its set of queues, then the job and its place on the queue).
    with queue.connection.pipeline() as pipeline:
        job = queue.enqueue(
            CHAT_JOB,
            kwargs=kwargs,
            job_id=job_id,
            job_timeout=job_timeout(settings),
            result_ttl=settings.RESULT_TTL_S,
            failure_ttl=settings.RESULT_TTL_S,
            meta={UPDATES_META: updates_channel} if updates_channel else None,
            pipeline=pipeline,
        )
        pipeline.execute()
    return job.id
