"""The jobs the worker runs; the web enqueues them by dotted path (`jobs.run_chat`)."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

import openai
from rq import get_current_job

import llm_client
from exceptions import ModelCallFailed
from job_outcomes import has_outcome, store_outcome, success_body
from settings import load_settings

logger = logging.getLogger(__name__)


@cache
def worker_settings() -> dict[str, Any]:
    """The worker process's settings, read once."""
    return load_settings()


@cache
def model_client() -> openai.OpenAI:
    """The worker process's one OpenAI client, shared by every job."""
    return llm_client.make_client(worker_settings())


def run_chat(messages: list[dict], participant_id: str | None = None) -> dict[str, Any]:
    """Ask the model for the next turn and store the answer where the web reads it."""
    settings = worker_settings()
    job = get_current_job()
    if has_outcome(job.connection, job.id):
        # Run again after its worker died between answering and bookkeeping: keep the answer.
        return {"recovered": True}
    request = llm_client.build_request(
        messages, settings["GPT_VERSION"], settings["GPT_TOKEN_LIMIT"]
    )
    ttl = settings["RESULT_TTL_S"]
    try:
        completion = llm_client.complete(model_client(), request)
    except ModelCallFailed as failure:
        logger.warning("chat job %s failed: %s", job.id, failure.message)
        store_outcome(job.connection, job.id, 502, json.dumps({"error": failure.message}), ttl)
        raise
    store_outcome(job.connection, job.id, 200, success_body(completion.raw_json), ttl)
    return {"model": completion.model, "usage": completion.usage, "attempts": completion.attempts}
