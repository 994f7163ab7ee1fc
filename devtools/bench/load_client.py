"""Simulated study participants: chat, poll for the answer, repeat, all on one event loop.

Each participant behaves like the single-page app: it POSTs /chat with the conversation
so far (or, with `sessions`, sends only each new message with the token of the study
session it opened with POST /sessions before the load began), then POSTs /check_response every
`poll_s` seconds (on a fixed grid, like `setInterval`, never two requests at once) until
the answer or an error comes, appends the answer to the conversation and starts the
next turn at once (no reading time, so the load is the worst case for the given number
of participants).

Starts are spread evenly over `stagger_s` seconds: real participants never press "send"
in the same millisecond, and a synthetic thundering herd would measure the herd, not the
service (the benchmark spreads them over one whole turn, see devtools.bench.run).

Everything runs on one asyncio loop; each participant keeps its own HTTP/1.1 keep-alive
connection, as a browser tab does. The client is a few lines on asyncio
streams because the generator shares the machine's two cores with the service it
measures: in the same run aiohttp cost 0.73 ms of CPU per request, this client 0.32 ms.
Every request has a timeout and the whole run a deadline: a run always ends by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from devtools import event_loop

logger = logging.getLogger(__name__)

# Below gunicorn's keepalive (5 s): a connection idle this long is replaced rather than
# reused, so the client never writes to a connection the server is closing.
KEEPALIVE_S = 3.0
HEAD_END = b"\r\n\r\n"
# Sessions opened at once before a --sessions load: a steady trickle, not a crowd.
SESSIONS_OPENED_AT_ONCE = 20


@dataclass(frozen=True)
class LoadPlan:
    """What the simulated participants do."""

    participants: int
    turns: int
    poll_s: float = 0.5
    stagger_s: float = 1.0
    request_timeout_s: float = 30.0
    deadline_s: float = 120.0
    run_id: str = "bench"
    # Above 0: long poll, each /check_response asks the server to wait this many seconds
    # (its "wait" field) and the next one follows at once, instead of polling every poll_s.
    wait_s: float = 0.0
    # True: a study session per participant (POST /sessions, then {sessionToken, message}),
    # the path a study defined on the server takes; False: the legacy API's bodies.
    sessions: bool = False


@dataclass
class TurnRecord:
    """One chat turn of one participant, timed on the monotonic clock."""

    participant: int
    turn: int
    started: float
    answered: float | None = None
    requests: int = 0
    error: str | None = None

    @property
    def wait_s(self) -> float | None:
        """Seconds from sending the chat to receiving the answer, if it came."""
        return None if self.answered is None else self.answered - self.started


@dataclass
class LoadResult:
    """Every turn of a run, and when the run began and ended."""

    plan: LoadPlan
    turns: list[TurnRecord] = field(default_factory=list)
    began: float = 0.0
    ended: float = 0.0
    deadline_hit: bool = False


class RequestFailed(Exception):
    """A request got an answer the API contract does not allow at this point."""


def start_delay(index: int, plan: LoadPlan) -> float:
    """Seconds after the run's start at which participant `index` sends its first chat."""
    if plan.participants <= 1:
        return 0.0
    return plan.stagger_s * index / plan.participants


def user_message(index: int, turn: int) -> dict[str, str]:
    """The message participant `index` types in `turn`."""
    return {"role": "user", "content": f"Participant {index}, turn {turn + 1}: what do you think?"}


def next_poll_delay(sent: float, now: float, interval: float) -> float:
    """Seconds to wait for the next tick of a grid of `interval` that started at `sent`."""
    ticks = int((now - sent) / interval) + 1
    return max(0.0, sent + ticks * interval - now)


def answer_text(body: dict[str, Any]) -> str:
    """The assistant's text in a /check_response answer (``{"response": completion}``)."""
    try:
        return str(body["response"]["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError) as error:
        raise RequestFailed("answer without choices[0].message.content") from error


def request_bytes(host: str, path: str, body: bytes) -> bytes:
    """An HTTP/1.1 keep-alive POST of a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in a lower-cased response head, if present."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    return head[start : head.find(b"\r\n", start)].strip()


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server keeps the connection open."""
    status_line, _, _ = head.partition(b"\r\n")
    try:
        version, status = status_line.split(b" ", 2)[:2]
        code = int(status)
    except ValueError as error:
        raise RequestFailed(f"malformed status line {status_line[:40]!r}") from error
    lowered = head.lower()
    if b"chunked" in (header_value(lowered, b"transfer-encoding") or b""):
        raise RequestFailed("chunked answers are not supported by the load client")
    connection = header_value(lowered, b"connection")
    closes = connection == b"close" or (version == b"HTTP/1.0" and connection != b"keep-alive")
    return code, int(header_value(lowered, b"content-length") or 0), not closes


class Connection:
    """One participant's keep-alive HTTP/1.1 connection, opened again when needed."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout_s = timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._last_used = 0.0

    async def post(self, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
        """POST `payload` as JSON to `path`; return status and body."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(
                    request_bytes(self.host, path, json.dumps(payload).encode())
                )
        except BaseException:
            self.close()  # a half-read answer must never be taken for the next one
            raise

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        if self._streams is None or loop.time() - self._last_used > KEEPALIVE_S:
            self.close()
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        status, length, keep_alive = parse_head(await reader.readuntil(HEAD_END))
        body = await reader.readexactly(length)
        self._last_used = loop.time()
        if not keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def post_json(
    connection: Connection, path: str, payload: dict[str, Any], record: TurnRecord
) -> tuple[int, dict[str, Any]]:
    """POST `payload`, count the request on `record`, return status and JSON body."""
    record.requests += 1
    status, raw = await connection.post(path, payload)
    try:
        return status, json.loads(raw)
    except ValueError as error:
        raise RequestFailed(f"{status} with a body that is not JSON") from error


def participant_id(plan: LoadPlan, index: int) -> str:
    """The Prolific id participant `index` of this run gives."""
    return f"{plan.run_id}-{index}"


def chat_body(plan: LoadPlan, messages: list[dict], index: int, token: str | None) -> dict:
    """A /chat body: the new message with a session's token, else the whole conversation."""
    if token is not None:
        return {"sessionToken": token, "message": {"content": messages[-1]["content"]}}
    return {"messages": messages, "participantId": participant_id(plan, index)}


async def open_session(connection: Connection, plan: LoadPlan, index: int) -> str:
    """Start participant `index`'s study session; its token."""
    record = TurnRecord(index, -1, 0.0)  # not a turn: its request is not counted
    status, body = await post_json(
        connection, "/sessions", {"participantId": participant_id(plan, index)}, record
    )
    if status != 201 or "sessionToken" not in body:
        raise RequestFailed(f"POST /sessions answered {status}")
    return str(body["sessionToken"])


async def one_turn(
    connection: Connection, plan: LoadPlan, payload: dict[str, Any], record: TurnRecord
) -> str:
    """Send one chat turn and poll until the answer; return the answer's text."""
    status, body = await post_json(connection, "/chat", payload, record)
    if status != 202 or "jobId" not in body:
        raise RequestFailed(f"POST /chat answered {status}")
    check = {"jobId": body["jobId"], **({"wait": plan.wait_s} if plan.wait_s else {})}
    loop = asyncio.get_running_loop()
    while True:
        if not plan.wait_s:
            await asyncio.sleep(next_poll_delay(record.started, loop.time(), plan.poll_s))
        status, body = await post_json(connection, "/check_response", check, record)
        if status != 200:
            raise RequestFailed(f"POST /check_response answered {status}")
        if body != {"processing": True}:
            record.answered = loop.time()
            return answer_text(body)


# What a turn can fail with, short of the run's deadline.
TURN_ERRORS = (TimeoutError, OSError, asyncio.IncompleteReadError, RequestFailed)


def describe_error(error: BaseException) -> str:
    """A short, countable name for what went wrong in a turn."""
    if isinstance(error, RequestFailed):
        return str(error)
    if isinstance(error, TimeoutError):
        return "request timed out"
    return type(error).__name__


async def participant(
    base_url: str, index: int, result: LoadResult, session: str | BaseException | None
) -> None:
    """Play every turn of participant `index` on its own connection, recording each turn.

    `session` is the participant's session token, or why it could not be had (None for
    the legacy API).
    """
    plan, loop = result.plan, asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, result.began + start_delay(index, plan) - loop.time()))
    if isinstance(session, BaseException):
        if not isinstance(session, TURN_ERRORS):
            raise session
        # Without a session no message can be sent: every turn counts as failed.
        failed = describe_error(session)
        result.turns.extend(
            TurnRecord(index, turn, loop.time(), error=failed) for turn in range(plan.turns)
        )
        return
    connection = Connection(base_url, plan.request_timeout_s)
    try:
        await play_turns(connection, result, index, session)
    finally:
        connection.close()


async def open_sessions(base_url: str, plan: LoadPlan) -> list[str | BaseException | None]:
    """Every participant's session token (or why there is none), before the load starts.

    Participants of a study arrive over minutes and open their session once: the load
    measures their turns, not a crowd opening sessions in the same two seconds.
    """
    if not plan.sessions:
        return [None] * plan.participants
    gate = asyncio.Semaphore(SESSIONS_OPENED_AT_ONCE)

    async def one(index: int) -> str:
        async with gate:
            connection = Connection(base_url, plan.request_timeout_s)
            try:
                return await open_session(connection, plan, index)
            finally:
                connection.close()

    opened = [one(index) for index in range(plan.participants)]
    return await asyncio.gather(*opened, return_exceptions=True)


async def play_turns(
    connection: Connection, result: LoadResult, index: int, token: str | None
) -> None:
    """Chat every turn of participant `index`, each turn recorded in `result`."""
    plan, loop = result.plan, asyncio.get_running_loop()
    messages: list[dict] = []
    for turn in range(plan.turns):
        messages.append(user_message(index, turn))
        record = TurnRecord(index, turn, loop.time())
        result.turns.append(record)
        try:
            text = await one_turn(connection, plan, chat_body(plan, messages, index, token), record)
        except TURN_ERRORS as error:
            # The app shows an error and the participant types the turn again.
            record.error = describe_error(error)
            messages.pop()
            continue
        messages.append({"role": "assistant", "content": text})


async def run_load(base_url: str, plan: LoadPlan) -> LoadResult:
    """Run every participant against `base_url` until all finish or the deadline passes."""
    sessions = await open_sessions(base_url, plan)
    loop = asyncio.get_running_loop()
    result = LoadResult(plan, began=loop.time() + 0.05)
    tasks = [
        asyncio.create_task(participant(base_url, index, result, sessions[index]))
        for index in range(plan.participants)
    ]
    _done, pending = await asyncio.wait(tasks, timeout=plan.deadline_s)
    result.ended = loop.time()
    result.deadline_hit = bool(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    if pending:
        logger.warning("deadline of %.0f s: %d participants cut off", plan.deadline_s, len(pending))
    return result


def simulate(base_url: str, plan: LoadPlan) -> LoadResult:
    """Run the participants on a fresh event loop (blocking; uvloop's, see event_loop)."""
    return event_loop.run(run_load(base_url, plan))
