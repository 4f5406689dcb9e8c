"""The connection's door: every command is admitted here before it is parsed or run.

Two rules, both per connection and held in its record so they hold across
Lambda containers (API Gateway spreads one socket's messages over any of them):

- the identity ends with its token: past the token's `exp` every command is
  refused with `unauthorized` and the socket is closed;
- a command rate limit, GCRA (the token bucket as one timestamp, `rate_tat`):
  `rate` commands a second with bursts of `burst`; a refused command still
  counts, so a client that ignores `retry_after_ms` stays refused, and one that
  runs `hard` commands past the burst is disconnected. Admitting a command is one
  conditional UpdateItem; refusing one usually costs nothing (see _LAST_TAT).

docs/limits.md lists the values and settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection


class ClosingError(CommandError):
    """A refusal after which the server closes the socket (the client sees this frame first)."""

    def __init__(self, code: ErrorCode, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, {"closing": True, **(data or {})})


# -- rules (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    rate_per_second: float
    burst: int
    hard: int

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000 / self.rate_per_second))

    @property
    def soft_ms(self) -> int:
        return self.burst * self.interval_ms

    @property
    def hard_ms(self) -> int:
        return (self.burst + self.hard) * self.interval_ms


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    close: bool
    retry_after_ms: int


def judge(limit: RateLimit, new_tat_ms: int, now_ms: int) -> Verdict:
    """The verdict on a command once it has been charged (the bucket's new `tat`)."""
    debt = new_tat_ms - now_ms
    if debt <= limit.soft_ms:
        return Verdict(True, False, 0)
    # the next command is admitted once its own charge fits in the burst again
    retry = new_tat_ms + limit.interval_ms - limit.soft_ms - now_ms
    return Verdict(False, debt > limit.hard_ms, retry)


def token_expired(token_exp: float | None, now_s: float) -> bool:
    return token_exp is not None and now_s >= token_exp


# -- store ---------------------------------------------------------------------

# This container's view of each bucket: the last stored value it saw, plus the
# commands it refused on its own since. Admitting always takes the stored bucket (so
# the rate holds across containers); refusing, once this view is over the burst, takes
# no I/O at all, so a flood costs the store about `burst` writes, not one per frame.
_LAST_TAT: dict[str, int] = {}
_LOCK = threading.Lock()


def _is_conditional(exc: UpdateError) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def charge(connection_id: str, limit: RateLimit, now_ms: int) -> Verdict:
    """Charge one command to the connection's bucket: one conditional UpdateItem, two at most."""
    interval = limit.interval_ms

    def idle() -> int:
        item = Connection(connection_id)
        item.update(
            actions=[Connection.rate_tat.set(now_ms + interval)],
            condition=Connection.connection_id.exists()
            & (Connection.rate_tat.does_not_exist() | (Connection.rate_tat <= now_ms)),
        )
        return now_ms + interval

    def busy() -> int:
        item = Connection(connection_id)
        item.update(
            actions=[Connection.rate_tat.set(Connection.rate_tat + interval)],
            # past the hard threshold the bucket stops growing: the socket is being closed
            condition=(Connection.rate_tat > now_ms) & (Connection.rate_tat <= now_ms + limit.hard_ms),
        )
        return int(item.rate_tat or 0)

    with _LOCK:
        last = _LAST_TAT.get(connection_id)
        if last is not None and last + interval - now_ms > limit.soft_ms:
            _remember(connection_id, last + interval)
            return judge(limit, last + interval, now_ms)
    attempts = (busy, idle) if last is not None and last > now_ms else (idle, busy)
    for attempt in attempts:
        try:
            tat = attempt()
        except UpdateError as exc:
            if not _is_conditional(exc):
                raise
            continue
        _remember(connection_id, tat)
        return judge(limit, tat, now_ms)
    # Neither condition held: the record is gone, or the bucket is past the hard threshold.
    try:
        record = Connection.get(connection_id, consistent_read=True)
    except Connection.DoesNotExist:
        raise CommandError(ErrorCode.UNAUTHORIZED, "connection is not registered; reconnect") from None
    tat = int(record.rate_tat or now_ms)
    _remember(connection_id, tat)
    return judge(limit, tat + interval, now_ms)


def _remember(connection_id: str, tat: int) -> None:
    _LAST_TAT[connection_id] = max(tat, _LAST_TAT.get(connection_id, tat))
    if len(_LAST_TAT) > 10_000:
        _LAST_TAT.pop(next(iter(_LAST_TAT)))


def admit(caller: Connection, limit: RateLimit, now_ms: int | None = None) -> None:
    """Raise if this command may not run; ClosingError when the socket must also be closed."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if token_expired(caller.token_exp, now_ms / 1000):
        raise ClosingError(ErrorCode.UNAUTHORIZED, "token expired; reconnect with a new ticket or token")
    verdict = charge(caller.connection_id, limit, now_ms)
    if verdict.close:
        raise ClosingError(ErrorCode.RATE_LIMITED, "too many commands; this connection is being closed")
    if not verdict.allowed:
        raise CommandError(
            ErrorCode.RATE_LIMITED, "too many commands; slow down", {"retry_after_ms": verdict.retry_after_ms}
        )


def forget(connection_id: str) -> None:
    _LAST_TAT.pop(connection_id, None)
