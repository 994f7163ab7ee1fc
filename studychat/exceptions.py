"""The service's own exceptions, in one flat module (as RQ keeps its own)."""

from __future__ import annotations


class StudyChatError(Exception):
    """Base class of every error this service raises on purpose."""


class SettingError(StudyChatError):
    """A setting is present but cannot be parsed."""


class StudyFileError(StudyChatError):
    """The study file cannot be read or does not validate; the message names the field."""


class MissingSettings(StudyChatError):
    """Required settings are missing; the process must not start."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            "Missing required settings: "
            + ", ".join(names)
            + ". Set them in the environment or in .env (see .env.example)."
        )


class BadRequest(StudyChatError):
    """The request body is malformed; the message names the field."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Refused(StudyChatError):
    """A request the service understood but will not carry out; `status` and message say why.

    A 429 carries `retry_after`, the seconds before trying again can help.
    """

    def __init__(self, status: int, message: str, retry_after: int = 3600) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)


class ModelCallFailed(StudyChatError):
    """The upstream model call failed for good; the message is safe to show."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        self.message = message
        self.attempts = attempts
        super().__init__(message)
