"""What a chat job of a study session carries beyond its messages, and what it leaves.

The web resolves the participant's condition into a `SessionTurn`; the job calls the
model with it and leaves, with its outcome, the turn to append to the server-held
conversation (`settled_turn`): the answer and its times, or the error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class SessionTurn:
    """The condition's model and parameters, and whose turn it is."""

    participant_id: str
    study: str
    condition: str
    model: str
    max_tokens: int
    budget_key: str
    # Unix time before which the answer is not released (min_reply_seconds); 0: at once.
    release_at: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def to_kwargs(self) -> dict[str, Any]:
        """The job argument (plain JSON)."""
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> SessionTurn:
        """The turn a job argument describes."""
        return cls(**kwargs)


def settled_turn(
    turn: SessionTurn, job_id: str, answer: dict | None, model: str, error: str | None
) -> dict[str, Any]:
    """What the conversation gains when the job ends: the answer, or the error on the message."""
    ended = datetime.now(UTC)
    if answer is None:
        return {"error": error or "The model call failed.", "failedAt": ended.isoformat()}
    released = max(ended, datetime.fromtimestamp(turn.release_at, UTC))
    return {
        "role": "assistant",
        "content": answer_text(answer),
        "jobId": job_id,
        "model": model,
        "answeredAt": ended.isoformat(),
        "releasedAt": released.isoformat(),
    }


def answer_text(answer: dict) -> str:
    """The text of a chat completion's first choice."""
    choices = answer.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""
