"""The service's own exceptions, in one flat module (as RQ keeps its own)."""

from __future__ import annotations


class StudyChatError(Exception):
    """Base class of every error this service raises on purpose."""


class SettingError(StudyChatError):
    """A setting is present but cannot be parsed."""


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


class ModelCallFailed(StudyChatError):
    """The upstream model call failed for good; the message is safe to show."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        self.message = message
        self.attempts = attempts
        super().__init__(message)
