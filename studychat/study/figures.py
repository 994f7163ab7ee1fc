"""Per-condition figures of the running study, for /admin and /metrics.

Participants come from the sessions collection (assigned, active in the last minutes,
saved); tokens from a Redis hash the worker adds to with each session answer
(`add_condition_tokens`, in the same transaction as the answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from pymongo.database import Database
from redis import Redis
from redis.client import Pipeline

from studychat.store.database import SESSIONS_COLLECTION
from studychat.study.definition import Study

CONDITION_TOKENS = "study:condition-tokens:"
ACTIVE_WINDOW = timedelta(minutes=10)
# How long a figure waits on MongoDB before the page shows none.
COUNT_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class ConditionFigures:
    """One condition's participants and spending."""

    condition: str
    assigned: int
    active: int
    saved: int
    tokens: int


def tokens_key(study_name: str) -> str:
    """The Redis hash of tokens spent per condition of a study."""
    return CONDITION_TOKENS + study_name


def add_condition_tokens(pipeline: Pipeline, study_name: str, condition: str, tokens: int) -> None:
    """Count a session answer's tokens for its condition, on `pipeline`."""
    pipeline.hincrby(tokens_key(study_name), condition, tokens)


def condition_figures(db: Database, redis: Redis, study: Study) -> list[ConditionFigures]:
    """Each condition's figures now; MongoDB being slow or down raises PyMongoError."""
    tokens: dict[Any, Any] = redis.hgetall(tokens_key(study.name))
    since = datetime.now(UTC) - ACTIVE_WINDOW
    figures = []
    with pymongo.timeout(COUNT_TIMEOUT_S):
        for name in study.conditions:
            scope = {"study": study.name, "condition": name}
            count = db[SESSIONS_COLLECTION].count_documents
            figures.append(
                ConditionFigures(
                    condition=name,
                    assigned=count(scope),
                    active=count({**scope, "lastActiveAt": {"$gte": since}, "savedAt": None}),
                    saved=count({**scope, "savedAt": {"$ne": None}}),
                    tokens=int(tokens.get(name.encode(), 0)),
                )
            )
    return figures
