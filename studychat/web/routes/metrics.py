"""GET /metrics: Prometheus metrics of the whole service, from any web process.

Chat job metrics (jobs by outcome, upstream latency, turn time, retries, tokens) are the
totals every worker keeps in Redis (job_metrics.py); the queue depth, jobs running,
workers alive and the study's token budget are read from Redis at scrape time; request
metrics of this machine's web processes come from request_metrics.py.

/metrics reports study volume (chats, tokens, budget left), so with ADMIN_TOKEN set it
needs `Authorization: Bearer <ADMIN_TOKEN>` like the admin pages (Prometheus sends it
with `authorization: {credentials: ...}` in its scrape config). Without ADMIN_TOKEN it is
open, so that a deployment without admin pages can still be monitored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from pymongo.errors import PyMongoError
from redis.exceptions import RedisError

from studychat.chat import budgets, job_metrics
from studychat.chat.queue_state import read_queue_state
from studychat.store import chat_log
from studychat.study.figures import condition_figures
from studychat.web.admin.auth import is_admin_request, unauthorized
from studychat.web.api_doc import documented
from studychat.web.request_metrics import scrape_registry
from studychat.web.services import Services, services

logger = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

UNAUTHORIZED = "/metrics needs the header Authorization: Bearer <ADMIN_TOKEN>."
METRICS_OPERATION = {
    "summary": "Prometheus metrics: chat jobs, queue, workers, tokens, budget, requests.",
    "tags": ["operations"],
    "security": [{"adminToken": []}, {}],
    "responses": {
        "200": {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        "401": {"description": "ADMIN_TOKEN is set and the request does not carry it."},
    },
}

HISTOGRAM_HELP = {
    job_metrics.UPSTREAM: (
        "chat_upstream_latency_seconds",
        "Seconds the model call of a chat job took, its retries included.",
    ),
    job_metrics.TURN: (
        "chat_turn_duration_seconds",
        "Seconds from a chat turn being queued to its answer being readable.",
    ),
}


class StudyCollector(Collector):
    """Reads the chat job totals and the live queue and budget figures from Redis."""

    def __init__(self, made: Services) -> None:
        self.made = made

    def describe(self) -> list:
        """Nothing: registering must not read Redis (each scrape makes a fresh registry)."""
        return []

    def collect(self) -> Iterator:
        """Every study metric; only `chat_redis_up 0` while Redis cannot be read."""
        redis = self.made.redis
        try:
            totals = job_metrics.read_totals(redis)
            queue = read_queue_state(redis)
            caps = budgets.Caps.from_settings(self.made.settings)
            spending = budgets.study_spending(redis, caps)
            transcripts_waiting = chat_log.entries_waiting(redis)
        except RedisError as error:
            logger.warning("metrics: redis unavailable: %s", type(error).__name__)
            yield GaugeMetricFamily("chat_redis_up", "Whether Redis could be read.", value=0)
            return
        yield GaugeMetricFamily("chat_redis_up", "Whether Redis could be read.", value=1)
        yield from job_families(totals)
        yield from queue_families(queue)
        yield GaugeMetricFamily(
            "chat_transcripts_waiting",
            "Transcript entries kept in Redis until MongoDB has them.",
            value=transcripts_waiting,
        )
        yield from budget_families(spending)
        yield from condition_families(self.made)


def condition_families(made: Services) -> Iterator:
    """Participants and tokens per condition of the study (none without one, or MongoDB)."""
    if made.study is None:
        return
    try:
        figures = condition_figures(made.db, made.redis, made.study)
    except PyMongoError as error:
        logger.warning("metrics: condition figures unavailable: %s", type(error).__name__)
        return
    participants = GaugeMetricFamily(
        "chat_condition_participants",
        "Participants per condition: assigned, active in the last 10 minutes, saved.",
        labels=["condition", "state"],
    )
    tokens = CounterMetricFamily(
        "chat_condition_tokens", "Model tokens spent per condition.", labels=["condition"]
    )
    for figure in figures:
        for state in ("assigned", "active", "saved"):
            participants.add_metric([figure.condition, state], getattr(figure, state))
        tokens.add_metric([figure.condition], figure.tokens)
    yield participants
    yield tokens


def job_families(totals: job_metrics.JobTotals) -> Iterator:
    """The counters and histograms the workers keep."""
    jobs = CounterMetricFamily(
        "chat_jobs", "Chat jobs that ended, by outcome (finished or failed).", labels=["outcome"]
    )
    for outcome, count in totals.jobs.items():
        jobs.add_metric([outcome], count)
    yield jobs
    yield CounterMetricFamily(
        "chat_upstream_retries", "Model calls retried after a failure.", value=totals.retries
    )
    tokens = CounterMetricFamily(
        "chat_tokens", "Model tokens used, as the model service reports them.", labels=["kind"]
    )
    for kind, count in totals.tokens.items():
        tokens.add_metric([kind], count)
    yield tokens
    for name, (metric, help_text) in HISTOGRAM_HELP.items():
        histogram = totals.histograms[name]
        yield HistogramMetricFamily(
            metric, help_text, buckets=list(histogram.buckets), sum_value=histogram.total
        )


def queue_families(queue) -> Iterator:
    """The queue's state at scrape time."""
    yield GaugeMetricFamily("chat_queue_depth", "Chat jobs waiting.", value=queue.waiting)
    yield GaugeMetricFamily("chat_jobs_running", "Chat jobs being run.", value=queue.running)
    yield GaugeMetricFamily(
        "chat_workers_alive", "Live workers serving the chat queue.", value=queue.workers_alive
    )


def budget_families(spending: budgets.Spending) -> Iterator:
    """Tokens counted against the study's budget, and what is left of it when capped."""
    yield GaugeMetricFamily(
        "chat_study_tokens_spent", "Tokens counted against the study.", value=spending.spent
    )
    yield GaugeMetricFamily(
        "chat_study_tokens_held", "Tokens held by chats in flight.", value=spending.held
    )
    if spending.cap is None:
        return
    yield GaugeMetricFamily(
        "chat_study_token_budget", "The study's token cap (STUDY_TOKEN_BUDGET).", value=spending.cap
    )
    left = max(spending.cap - spending.spent - spending.held, 0)
    yield GaugeMetricFamily(
        "chat_study_budget_left_tokens", "Tokens the study may still spend.", value=left
    )


@bp.get("/metrics")
@documented(METRICS_OPERATION)
def metrics():
    """The Prometheus text exposition of every metric."""
    made = services()
    expected = made.settings.ADMIN_TOKEN
    if expected and not is_admin_request(expected):
        return unauthorized(UNAUTHORIZED)
    registry = scrape_registry()
    registry.register(StudyCollector(made))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
