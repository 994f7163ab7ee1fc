"""The jobs the worker runs; the web enqueues them by dotted path (`jobs.run_chat`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import openai
from rq import get_current_job
from rq.job import Job

from studychat import outage_watch
from studychat.chat import answer_stream, budgets, job_metrics, llm_client
from studychat.chat.outcomes import has_outcome, store_outcome, success_body
from studychat.exceptions import ModelCallFailed
from studychat.outage_watch import REDIS_UNAVAILABLE, Backoff
from studychat.settings import Settings, load_settings
from studychat.store import chat_log

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What every chat job of one worker process shares: its settings and model client."""

    settings: Settings
    model: openai.OpenAI


_context: JobContext | None = None


def init_jobs(settings: Settings) -> None:
    """Give this process's chat jobs their settings and one model client (worker.main)."""
    global _context
    _context = JobContext(settings, llm_client.make_client(settings))


def job_context() -> JobContext:
    """The context init_jobs gave; a worker started another way (`rq worker`) reads its own."""
    if _context is None:
        init_jobs(load_settings())
    assert _context is not None
    return _context


def run_chat(
    messages: list[dict], participant_id: str | None = None, stream: bool = False
) -> dict[str, Any]:
    """Ask the model for the next turn; store the answer and its transcript entry together."""
    settings = job_context().settings
    job = running_job()
    if has_outcome(job.connection, job.id):
        # Run again after its worker died between answering and bookkeeping: keep the answer.
        return {"recovered": True}
    request = llm_client.build_request(messages, settings.GPT_VERSION, settings.GPT_TOKEN_LIMIT)
    called = time.monotonic()
    try:
        completion = _call_model(job, request, stream)
    except ModelCallFailed as failure:
        logger.warning("chat job %s failed: %s", job.id, failure.message)
        body = json.dumps({"error": failure.message})
        took = time.monotonic() - called
        when_redis_is_up(
            partial(
                _finish,
                job,
                502,
                body,
                None,
                error=failure.message,
                attempts=failure.attempts,
                upstream_s=took,
            )
        )
        raise
    took = time.monotonic() - called
    when_redis_is_up(
        lambda: budgets.record_usage(job.connection, job.id, participant_id, completion.usage)
    )
    answer = json.loads(completion.raw_json)
    when_redis_is_up(
        lambda: _finish(
            job, 200, success_body(completion.raw_json), answer, completion, upstream_s=took
        )
    )
    logger.info("answered in %.2f s, %d attempts", took, completion.attempts)
    return {"model": completion.model, "usage": completion.usage, "attempts": completion.attempts}


def running_job() -> Job:
    """The RQ job this function runs in (run_chat runs only in a worker)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_chat runs only inside an RQ job")
    return job


def when_redis_is_up(write: Callable[[], object]) -> None:
    """Run `write` until Redis takes it, so an answer the model gave during an outage is kept.

    Bounded by the job's timeout; a job cut short is run again by recovery.
    """
    backoff = Backoff()
    while True:
        try:
            write()
        except REDIS_UNAVAILABLE as error:
            outage_watch.REDIS.failed(error, "storing an answer")
            time.sleep(backoff.next_delay())
        else:
            outage_watch.REDIS.succeeded()
            return


def _call_model(job: Job, request: dict[str, Any], stream: bool) -> llm_client.Completion:
    """The model's answer; streamed delta by delta to readers of GET /stream when asked."""
    if not stream:
        return llm_client.complete(job_context().model, request)
    publisher = answer_stream.DeltaPublisher(job.connection, job.id)
    try:
        return llm_client.complete_streaming(job_context().model, request, publisher.add)
    finally:
        publisher.flush()


def _finish(
    job: Job,
    code: int,
    body: str,
    answer: dict | None,
    completion: llm_client.Completion | None = None,
    error: str | None = None,
    attempts: int | None = None,
    upstream_s: float | None = None,
) -> None:
    """Store the answer the web reads, the transcript entry and the metrics in one transaction."""
    entry = chat_log.entry_for(
        job,
        "finished" if code == 200 else "failed",
        answer,
        model=completion.model if completion else job_context().settings.GPT_VERSION,
        usage=completion.usage if completion else None,
        attempts=completion.attempts if completion else attempts,
        error=error,
        endedAt=chat_log.utcnow_iso(),
    )
    with job.connection.pipeline(transaction=True) as pipeline:
        ttl = job_context().settings.RESULT_TTL_S
        store_outcome(pipeline, job.id, code, body, ttl)
        answer_stream.mark_ended(pipeline, job.id, ttl)
        chat_log.add_entry(pipeline, entry)
        job_metrics.record_job(
            pipeline, job, code == 200, upstream_s, entry["attempts"], entry["usage"]
        )
        pipeline.execute()
