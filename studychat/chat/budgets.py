"""Token budgets per participant and for the whole study, counted atomically in Redis.

Spending is what the model service reports (`usage.total_tokens`), added by the worker
after each completion (`record_usage`, or `queue_usage` in the transaction that stores
the answer). A cap alone would let every chat already in
flight overshoot it, so admission also counts *holds*: the web admits a chat only while
`spent + held < cap` (for the participant and for the study), and the admitted chat
holds a provisional charge, an upper bound on what the call can cost, until the worker
records its real usage. The total therefore exceeds a cap by less than one call's cost.

A hold whose job never reports (the model call failed, the job was lost) lapses after
`hold_seconds` (the longest a job may run); until then it keeps counting, which is the
cautious side since a failed call's cost is unknown.

Every Redis key lives here. The scripts build a participant's key from its id in Lua,
which is fine on a single Redis server (Heroku, DigitalOcean) but not on Redis Cluster.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

from studychat.chat.task_queue import job_timeout
from studychat.redis_scripts import run_script, script_for
from studychat.settings import Settings

STUDY_SPENT = "budget:study:spent"
STUDY_HELD = "budget:study:held"
# job id -> "charge|participantId" of each admitted chat whose usage is not counted yet.
HOLDS = "budget:holds"
# job id -> unix time at which its hold lapses.
HOLD_DEADLINES = "budget:hold-deadlines"
PARTICIPANT_PREFIX = "budget:participant:"
SPENT_SUFFIX = ":spent"
HELD_SUFFIX = ":held"

# Upper bounds of what one call can cost beyond its text (which costs at most a token per
# UTF-8 byte): the per-message framing, and an image sent with detail "low" (85 tokens on
# gpt-4o, about 2,800 on gpt-4o-mini, which bills images at a multiple).
TOKENS_PER_MESSAGE = 8
TOKENS_PER_IMAGE = 4000
# Lapsed holds freed per admission, so one call never does unbounded work.
LAPSED_PER_CALL = 100

STUDY = "study"
PARTICIPANT = "participant"

# Frees one hold: KEYS[1] study held, KEYS[2] holds, KEYS[3] deadlines; ARGV: prefix, suffix.
_RELEASE = """
local function release(job)
  local hold = redis.call('HGET', KEYS[2], job)
  redis.call('ZREM', KEYS[3], job)
  if not hold then return end
  redis.call('HDEL', KEYS[2], job)
  local bar = string.find(hold, '|', 1, true)
  local charge = tonumber(string.sub(hold, 1, bar - 1))
  local pid = string.sub(hold, bar + 1)
  redis.call('DECRBY', KEYS[1], charge)
  if pid ~= '' then redis.call('DECRBY', ARGV[1] .. pid .. ARGV[2], charge) end
end
"""

# KEYS: study held, holds, deadlines, study spent, participant spent, participant held.
# ARGV: prefix, held suffix, now, study cap, participant cap (-1: none), job id, charge,
# deadline, participant id ('' for none), lapsed holds to free at most.
# Returns 'ok', 'study' or 'participant'.
_ADMIT = (
    _RELEASE
    + """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3], 'LIMIT', 0, ARGV[10])
for _, job in ipairs(lapsed) do
  release(job)
end
local function reached(spent_key, held_key, cap)
  if cap < 0 then return false end
  local used = tonumber(redis.call('GET', spent_key) or '0')
  return used + tonumber(redis.call('GET', held_key) or '0') >= cap
end
local pid = ARGV[9]
if reached(KEYS[4], KEYS[1], tonumber(ARGV[4])) then return 'study' end
if pid ~= '' and reached(KEYS[5], KEYS[6], tonumber(ARGV[5])) then return 'participant' end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7] .. '|' .. pid)
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6])
redis.call('INCRBY', KEYS[1], ARGV[7])
if pid ~= '' then redis.call('INCRBY', KEYS[6], ARGV[7]) end
return 'ok'
"""
)

# KEYS: study held, holds, deadlines, study spent, participant spent.
# ARGV: prefix, held suffix, job id, tokens, participant id ('' for none).
_SETTLE = (
    _RELEASE
    + """
release(ARGV[3])
redis.call('INCRBY', KEYS[4], ARGV[4])
if ARGV[5] ~= '' then redis.call('INCRBY', KEYS[5], ARGV[4]) end
return 1
"""
)


@dataclass(frozen=True)
class Caps:
    """The token caps of a deployment; None means no cap."""

    participant: int | None
    study: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        """The caps named in `settings`."""
        return cls(settings.PARTICIPANT_TOKEN_BUDGET, settings.STUDY_TOKEN_BUDGET)

    @property
    def any(self) -> bool:
        """Whether any cap is set (without one, admission needs no bookkeeping)."""
        return self.participant is not None or self.study is not None


def participant_spent_key(participant_id: str) -> str:
    """The key of a participant's counted tokens."""
    return PARTICIPANT_PREFIX + participant_id + SPENT_SUFFIX


def participant_held_key(participant_id: str) -> str:
    """The key of a participant's provisional charges of chats in flight."""
    return PARTICIPANT_PREFIX + participant_id + HELD_SUFFIX


def provisional_charge(messages: Sequence[Mapping[str, Any]], token_limit: int) -> int:
    """An upper bound on the tokens one call can cost: prompt bytes, framing, images, answer."""
    prompt = sum(len(message["content"].encode()) for message in messages)
    images = sum(1 for message in messages if message.get("image"))
    framing = TOKENS_PER_MESSAGE * (len(messages) + 1)
    return prompt + framing + TOKENS_PER_IMAGE * images + token_limit


def hold_seconds(settings: Settings) -> int:
    """How long a hold counts before it lapses: as long as a job may run."""
    return job_timeout(settings)


def admit(
    connection: Redis,
    job_id: str,
    participant_id: str | None,
    charge: int,
    caps: Caps,
    hold_for: int,
) -> str | None:
    """Hold `charge` for the job, or name the budget (STUDY, PARTICIPANT) already spent."""
    if not caps.any:
        return None
    pid = participant_id or ""
    now = time.time()
    verdict = run_script(
        connection,
        _ADMIT,
        keys=[
            STUDY_HELD,
            HOLDS,
            HOLD_DEADLINES,
            STUDY_SPENT,
            participant_spent_key(pid),
            participant_held_key(pid),
        ],
        args=[
            PARTICIPANT_PREFIX,
            HELD_SUFFIX,
            now,
            _cap(caps.study),
            _cap(caps.participant),
            job_id,
            charge,
            now + hold_for,
            pid,
            LAPSED_PER_CALL,
        ],
    )
    verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
    return None if verdict == "ok" else verdict


def _cap(cap: int | None) -> int:
    return -1 if cap is None else cap


def record_usage(
    connection: Redis, job_id: str, participant_id: str | None, usage: Mapping[str, Any] | None
) -> int:
    """Count a finished call's tokens for its participant and the study; free its hold."""
    tokens = usage_tokens(usage)
    keys, args = _settle_params(job_id, participant_id, tokens)
    run_script(connection, _SETTLE, keys=keys, args=args)
    return tokens


def queue_usage(
    pipeline: Pipeline, job_id: str, participant_id: str | None, usage: Mapping[str, Any] | None
) -> None:
    """Queue record_usage on `pipeline`, to take effect with the rest of its transaction.

    The script is called by its SHA1 alone: a pipeline's Script would first ask Redis
    whether it knows the script, a round trip of its own. After a Redis restart it does
    not; `usage_recorded` tells, and record_usage then runs it on its own.
    """
    keys, args = _settle_params(job_id, participant_id, usage_tokens(usage))
    pipeline.evalsha(script_for(pipeline, _SETTLE).sha, len(keys), *keys, *args)


def usage_recorded(result: object) -> bool:
    """Whether queue_usage's command ran: its result in the pipeline's list of results."""
    if isinstance(result, NoScriptError):
        return False
    if isinstance(result, Exception):
        raise result
    return True


def _settle_params(
    job_id: str, participant_id: str | None, tokens: int
) -> tuple[list[str], list[Any]]:
    pid = participant_id or ""
    keys = [STUDY_HELD, HOLDS, HOLD_DEADLINES, STUDY_SPENT, participant_spent_key(pid)]
    return keys, [PARTICIPANT_PREFIX, HELD_SUFFIX, job_id, tokens, pid]


# KEYS: study held, holds, deadlines; ARGV: prefix, held suffix, job ids...
_FORGET = (
    _RELEASE
    + """
for i = 3, #ARGV do release(ARGV[i]) end
return 1
"""
)


def forget(connection: Redis, budget_keys: Sequence[str], job_ids: Sequence[str]) -> int:
    """Erase what budgets hold of a participant: their jobs' holds, their own counters.

    The holds are released (the study's held count gives their charge back), so erasing
    a participant mid-turn never leaves the study budget charged for nothing. The study's
    spent total keeps their tokens: it holds no personal data. Returns keys deleted.
    """
    if job_ids:
        run_script(
            connection,
            _FORGET,
            keys=[STUDY_HELD, HOLDS, HOLD_DEADLINES],
            args=[PARTICIPANT_PREFIX, HELD_SUFFIX, *job_ids],
        )
    keys = [
        k for key in budget_keys for k in (participant_spent_key(key), participant_held_key(key))
    ]
    return int(connection.delete(*keys)) if keys else 0


def usage_tokens(usage: Mapping[str, Any] | None) -> int:
    """The tokens a completion's `usage` reports (total, else prompt plus completion)."""
    usage = usage or {}
    total = usage.get("total_tokens")
    if _count(total):
        return total
    parts = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return sum(part for part in parts if _count(part))


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Spending:
    """Tokens counted and held for one scope, and its cap."""

    spent: int
    held: int
    cap: int | None


def study_spending(connection: Redis, caps: Caps) -> Spending:
    """What the whole study has spent and holds."""
    spent, held = connection.mget(STUDY_SPENT, STUDY_HELD)
    return Spending(int(spent or 0), int(held or 0), caps.study)


def participant_spending(connection: Redis, participant_id: str, caps: Caps) -> Spending:
    """What one participant has spent and holds."""
    spent, held = connection.mget(
        participant_spent_key(participant_id), participant_held_key(participant_id)
    )
    return Spending(int(spent or 0), int(held or 0), caps.participant)


def admit_chat(
    connection: Redis,
    job_id: str,
    participant_id: str | None,
    messages: Sequence[Mapping[str, Any]],
    settings: Settings,
    token_limit: int | None = None,
) -> str | None:
    """Admit one chat turn under the caps of `settings`, or name the budget that is spent.

    `token_limit` is the turn's output cap when a study condition sets its own.
    """
    charge = provisional_charge(messages, token_limit or settings.GPT_TOKEN_LIMIT)
    caps = Caps.from_settings(settings)
    return admit(connection, job_id, participant_id, charge, caps, hold_seconds(settings))
