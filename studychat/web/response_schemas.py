"""Declared answer bodies of every route, for the OpenAPI document (openapi.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from studychat.web.schemas import JOB_ID_PATTERN


class ErrorAnswer(BaseModel):
    """Every 4xx and 5xx answer: a sentence that names the problem, nothing internal."""

    error: str


class JobAccepted(BaseModel):
    """202 of POST /chat: the job to poll with POST /check_response."""

    jobId: str = Field(pattern=JOB_ID_PATTERN)


class Processing(BaseModel):
    """200 of POST /check_response while the model is still answering."""

    processing: Literal[True]


class ChatAnswer(BaseModel):
    """200 of POST /check_response once answered: the model service's completion, untouched."""

    response: dict[str, Any] = Field(
        description="The chat.completion object exactly as the model service sent it."
    )


class Saved(BaseModel):
    """201 of POST /save: the participant's completion code and where to send them."""

    message: Literal["OK"]
    prolificCode: str
    prolificUrl: str


class SessionMessageShown(BaseModel):
    """One message of a session's conversation as the participant may see it."""

    role: Literal["user", "assistant"]
    content: str
    image: str | None = None
    jobId: str | None = Field(default=None, description="The chat job of this turn.")
    error: str | None = Field(default=None, description="Why this message got no answer.")


class SessionOpened(BaseModel):
    """200 or 201 of POST /sessions: the participant's credential, condition and conversation."""

    sessionToken: str = Field(description="Send it with every /chat and /save of the session.")
    condition: str
    messages: list[SessionMessageShown] = Field(
        description="The conversation so far: the opening message, then every turn released."
    )
    client: dict[str, Any] = Field(description="The condition's `client` from the study file.")
    maxTurns: int = Field(description="Messages the participant may send in the session.")
    pendingJobId: str | None = Field(
        description="The job of a message still awaiting its answer (poll or stream it)."
    )


class Participated(BaseModel):
    """302 of POST /check_participation: a record exists for this id."""

    participated: Literal[True]


class Spending(BaseModel):
    """Tokens counted (reported by the model service), held by chats in flight, and the cap."""

    spent: int
    inFlight: int
    cap: int | None


class BudgetReport(BaseModel):
    """200 of GET /admin/budget."""

    study: Spending
    participantCap: int | None
    participant: Spending | None = Field(
        default=None, description="The participant named by ?participantId=, if any."
    )
