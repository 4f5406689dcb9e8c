"""Refusals: a stable error code and a message, raised by the rules, sent by the handlers."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LIMIT_REACHED = "limit_reached"
    RATE_LIMITED = "rate_limited"
    SPACE_ENDED = "space_ended"
    INTERNAL = "internal"


class CommandError(Exception):
    """A refusal with a stable code; nothing was changed."""

    def __init__(self, code: ErrorCode, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
