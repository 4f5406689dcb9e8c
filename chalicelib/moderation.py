"""Safety: suspensions, reports and the moderation queue."""

from __future__ import annotations

import time

from pynamodb.exceptions import DoesNotExist

from chalicelib.models import User
from chalicelib.protocol import CommandError, ErrorCode


def suspended_until(user_id: str) -> float | None:
    try:
        user = User.get(user_id)
    except DoesNotExist:
        return None
    until = user.suspended_until
    return float(until) if until and until > time.time() else None


def suspension_refusal(user_id: str) -> CommandError | None:
    until = suspended_until(user_id)
    if until is None:
        return None
    return CommandError(ErrorCode.NOT_ALLOWED, "this account is suspended", {"suspended_until": until})
