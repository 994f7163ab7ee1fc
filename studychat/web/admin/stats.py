"""The figures of the live study page (GET /admin/api/stats), read at the moment asked.

Chats and errors per minute come from the counters the worker keeps in Redis
(job_metrics.py); the queue and its workers from RQ's own keys (queue_state.py); tokens
from the budget counters (budgets.py); participants from MongoDB's collection count.
MongoDB being down leaves `participantsSaved` null rather than failing the whole page.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from studychat.chat import budgets, job_metrics
from studychat.chat.queue_state import read_queue_state
from studychat.store import chat_log
from studychat.store.database import DATA_COLLECTION
from studychat.study.figures import condition_figures
from studychat.web.services import Services

logger = logging.getLogger(__name__)

HOUR_MINUTES = 60
# How long the page waits on MongoDB for the participant count before showing none.
COUNT_TIMEOUT_S = 1.5
DEFAULT_CHART_MINUTES = 60
MAX_CHART_MINUTES = 24 * 60


def participants_saved(db: Database) -> int | None:
    """Records in the `data` collection (from its metadata: no scan), None if unreachable."""
    try:
        with pymongo.timeout(COUNT_TIMEOUT_S):
            return db[DATA_COLLECTION].estimated_document_count()
    except PyMongoError as error:
        logger.warning("participant count unavailable: %s", type(error).__name__)
        return None


def error_rate(chats: int, errors: int) -> float | None:
    """Failed chats as a share of all chats that ended; None when none ended."""
    return round(errors / chats, 4) if chats else None


def token_figures(spending: budgets.Spending) -> dict[str, int | None]:
    """Tokens spent and held against the study's cap, and what is left of it."""
    left = None if spending.cap is None else max(spending.cap - spending.spent - spending.held, 0)
    return {"spent": spending.spent, "held": spending.held, "cap": spending.cap, "left": left}


def study_figures(made: Services) -> dict[str, Any] | None:
    """The study's name and per-condition figures; conditions None while MongoDB is down."""
    if made.study is None:
        return None
    try:
        figures = [vars(f) for f in condition_figures(made.db, made.redis, made.study)]
    except PyMongoError as error:
        logger.warning("condition figures unavailable: %s", type(error).__name__)
        figures = None
    return {"name": made.study.name, "hash": made.study.hash, "conditions": figures}


def study_stats(
    made: Services, chart_minutes: int = DEFAULT_CHART_MINUTES, now: float | None = None
) -> dict[str, Any]:
    """Every figure of the live study page, and the per-minute series of its chart."""
    now = time.time() if now is None else now
    minutes = job_metrics.read_minutes(made.redis, max(chart_minutes, HOUR_MINUTES), now)
    chats, errors = job_metrics.summed(minutes[-HOUR_MINUTES:])
    queue = read_queue_state(made.redis)
    spending = budgets.study_spending(made.redis, budgets.Caps.from_settings(made.settings))
    totals = job_metrics.read_totals(made.redis)
    return {
        "generatedAt": int(now),
        "participantsSaved": participants_saved(made.db),
        "chatsLastHour": chats,
        "errorsLastHour": errors,
        "errorRateLastHour": error_rate(chats, errors),
        "queueDepth": queue.waiting,
        "jobsRunning": queue.running,
        "workersAlive": queue.workers_alive,
        "transcriptsWaiting": chat_log.entries_waiting(made.redis),
        "tokens": token_figures(spending),
        "jobsTotal": totals.jobs,
        "study": study_figures(made),
        "series": [
            {"start": minute.start, "chats": minute.chats, "errors": minute.errors}
            for minute in minutes[-chart_minutes:]
        ],
    }
