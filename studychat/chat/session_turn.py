"""What a chat job of a study session carries beyond its messages, and what it leaves.

The web resolves the participant's condition into a `SessionTurn`; the job calls the
model with it and leaves, with its outcome, the turn to append to the server-held
conversation (`settled_turn`): the answer and its times, or the error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from studychat.chat.provenance import utc_iso


@dataclass(frozen=True)
class SessionTurn:
    """The condition's model and parameters, and whose turn it is."""

    participant_id: str
    study: str
    study_hash: str
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

    def provenance(self) -> dict[str, str]:
        """What a session's turn adds to its transcript entry: condition and study hash."""
        return {"condition": self.condition, "studyHash": self.study_hash}


def settled_turn(
    turn: SessionTurn, job_id: str, answer: dict | None, facts: dict[str, Any], error: str | None
) -> dict[str, Any]:
    """What the conversation gains when the job ends: the answer, or the error on the message.

    `facts` are the turn's timing and provenance (provenance.turn_facts).
    """
    if answer is None:
        failed = {"error": error or "The model call failed.", "failedAt": utc_iso()}
        return {**failed, "attempts": facts["attempts"]}
    answered = datetime.fromisoformat(facts["answeredAt"])
    released = max(answered, datetime.fromtimestamp(turn.release_at, UTC))
    return {
        "role": "assistant",
        "content": answer_text(answer),
        "jobId": job_id,
        **{key: value for key, value in facts.items() if key != "receivedAt"},
        "releasedAt": utc_iso(released),
        **turn.provenance(),
    }


def answer_text(answer: dict) -> str:
    """The text of a chat completion's first choice."""
    choices = answer.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""
