"""The jobs the worker runs; the web enqueues them by dotted path (`jobs.run_chat`)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from rq import get_current_job
from rq.job import Job

from studychat import outage_watch
from studychat.chat import answer_stream, budgets, job_metrics, llm_client
from studychat.chat.metrics_tally import MetricsTally
from studychat.chat.model_clients import ModelClients
from studychat.chat.outcomes import store_outcome, stored_before_run, success_body
from studychat.chat.provenance import CallTiming, turn_facts, utc_iso
from studychat.chat.session_turn import SessionTurn, settled_turn
from studychat.exceptions import ModelCallFailed
from studychat.outage_watch import REDIS_UNAVAILABLE, Backoff
from studychat.settings import Settings, load_settings
from studychat.store import chat_log
from studychat.study.figures import add_condition_tokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """What every chat job of one worker process shares: its settings and model clients.

    With a `tally`, jobs add their metrics to it (written once a second, see
    metrics_tally); without one, to the transaction that stores their answer.
    """

    settings: Settings
    models: ModelClients
    tally: MetricsTally | None = None


_context: JobContext | None = None


def init_jobs(settings: Settings, tally: MetricsTally | None = None) -> None:
    """Give this process's chat jobs their settings, model clients and metrics tally."""
    global _context
    _context = JobContext(settings, llm_client.make_clients(settings), tally)


def job_context() -> JobContext:
    """The context init_jobs gave; a worker started another way (`rq worker`) reads its own."""
    if _context is None:
        init_jobs(load_settings())
    assert _context is not None
    return _context


def run_chat(
    messages: list[dict],
    participant_id: str | None = None,
    stream: bool = False,
    session: dict[str, Any] | None = None,
    received_at: str | None = None,
) -> dict[str, Any]:
    """Ask the model for the next turn; store the answer and its transcript entry together.

    `session` (a SessionTurn's kwargs) names the condition's model and parameters of a
    study session's turn; without it (legacy API) the settings name them. `received_at`
    is when the web received the message.
    """
    job = running_job()
    if stored_before_run(job.connection, job.id):
        # Run again after its worker died between answering and bookkeeping: keep the answer.
        return {"recovered": True}
    turn = SessionTurn.from_kwargs(session) if session else None
    request = model_request(messages, turn)
    called = time.monotonic()
    try:
        completion, first_token_at = _call_model(job, request, stream)
    except ModelCallFailed as failure:
        logger.warning("chat job %s failed: %s", job.id, failure.message)
        timing = CallTiming(None, utc_iso())
        facts = turn_facts(job, request, timing, None, failure.attempts, None, received_at)
        body = json.dumps({"error": failure.message})
        ending = Ending(502, body, None, time.monotonic() - called, facts, failure.message)
        when_redis_is_up(partial(_finish, job, turn, ending))
        raise
    took = time.monotonic() - called
    timing = CallTiming(first_token_at, utc_iso())
    answer = json.loads(completion.raw_json)
    facts = turn_facts(
        job, request, timing, answer, completion.attempts, completion.usage, received_at
    )
    budget_key = turn.budget_key if turn else participant_id
    ending = Ending(
        200, success_body(completion.raw_json), answer, took, facts, budget_key=budget_key
    )
    when_redis_is_up(partial(_finish, job, turn, ending))
    logger.info("answered in %.2f s, %d attempts", took, completion.attempts)
    return {"model": completion.model, "usage": completion.usage, "attempts": completion.attempts}


@dataclass(frozen=True)
class Ending:
    """How a job ended: the body the web sends, and what the transcript records."""

    code: int
    body: str
    answer: dict | None
    upstream_s: float
    facts: dict[str, Any]
    error: str | None = None
    # Whose budget the call's usage counts against (a success's only).
    budget_key: str | None = None


def model_request(messages: list[dict], turn: SessionTurn | None) -> dict[str, Any]:
    """The upstream request: the session's condition decides model and options, else settings."""
    if turn is not None:
        return llm_client.build_request(messages, turn.model, turn.max_tokens, turn.options)
    settings = job_context().settings
    return llm_client.build_request(messages, settings.GPT_VERSION, settings.GPT_TOKEN_LIMIT)


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


def _call_model(
    job: Job, request: dict[str, Any], stream: bool
) -> tuple[llm_client.Completion, str | None]:
    """The model's answer, and when its first token came (streamed calls only).

    Streamed, it goes delta by delta to readers of GET /stream.
    """
    models = job_context().models
    if not stream:
        with models.client() as client:
            return llm_client.complete(client, request, job.id), None
    channel = answer_stream.updates_channel(job)
    publisher = answer_stream.DeltaPublisher(job.connection, job.id, channel)
    try:
        with models.client() as client:
            completion = llm_client.complete_streaming(client, request, publisher.add)
    finally:
        publisher.flush()
    return completion, publisher.first_at


def _finish(job: Job, turn: SessionTurn | None, ending: Ending) -> None:
    """Store the answer the web reads, the transcript entry, the metrics and, for a success,
    the budget's usage in one transaction: a participant never sees an answer whose tokens
    are not counted yet, and a rerun never counts them twice.
    """
    succeeded = ending.code == 200
    settled = (
        settled_turn(turn, job.id, ending.answer, ending.facts, ending.error) if turn else None
    )
    entry = chat_log.entry_for(
        job,
        "finished" if succeeded else "failed",
        ending.answer,
        error=ending.error,
        endedAt=utc_iso(),
        **ending.facts,
        **(session_details(turn, settled) if turn else {}),
    )
    usage = ending.facts["usage"]
    sample = job_metrics.sample_of(
        job, succeeded, ending.upstream_s, ending.facts["attempts"], usage
    )
    context = job_context()
    with job.connection.pipeline(transaction=True) as pipeline:
        ttl = context.settings.RESULT_TTL_S
        store_outcome(pipeline, job.id, ending.code, ending.body, ttl, turn_fields(turn, settled))
        streamed = bool(job.kwargs.get("stream"))
        answer_stream.mark_ended(pipeline, job.id, streamed, answer_stream.updates_channel(job))
        chat_log.add_entry(pipeline, entry)
        if context.tally is None:
            job_metrics.record(pipeline, sample)
        if turn is not None:
            tokens = budgets.usage_tokens(usage)
            add_condition_tokens(pipeline, turn.study, turn.condition, tokens)
        if succeeded:
            budgets.queue_usage(pipeline, job.id, ending.budget_key, usage)
        results = pipeline.execute(raise_on_error=False)
    _raise_first_error(results[:-1] if succeeded else results)
    if context.tally is not None:
        context.tally.add(sample)  # counted once its answer is stored, never before
    if succeeded and not budgets.usage_recorded(results[-1]):
        when_redis_is_up(
            lambda: budgets.record_usage(job.connection, job.id, ending.budget_key, usage)
        )


def _raise_first_error(results: list[Any]) -> None:
    """Raise what a transaction's command failed with, as `execute()` would by default."""
    for result in results:
        if isinstance(result, Exception):
            raise result


def session_details(turn: SessionTurn, settled: dict[str, Any] | None) -> dict[str, Any]:
    """What a session's turn adds to its transcript entry: condition, study, release, turn."""
    released = (settled or {}).get("releasedAt")
    return {**turn.provenance(), "releasedAt": released, "turn": settled}


def turn_fields(turn: SessionTurn | None, settled: dict | None) -> dict[str, str]:
    """What a session's outcome adds: the turn to append, its release time, its participant."""
    if turn is None:
        return {}
    return {
        "turn": json.dumps(settled),
        "release": repr(turn.release_at),
        "participant": turn.participant_id,
    }
