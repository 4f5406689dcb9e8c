"""The connection's door: every command is admitted here before it is parsed or run.

Two rules, both per connection and held in its record so they hold across
Lambda containers (API Gateway spreads one socket's messages over any of them):

- the identity ends with its token: past the token's `exp` every command is
  refused with `unauthorized` and the socket is closed;
- a command rate limit, GCRA (the token bucket as one timestamp, `rate_tat`):
  `rate` commands a second with bursts of `burst`; a refused command still
  counts, so a client that ignores `retry_after_ms` stays refused, and one that
  runs `hard` commands past the burst is disconnected. A container leases a few
  commands at a time from the stored bucket (one conditional UpdateItem per LEASE
  commands), and refusing past the burst costs no I/O (see _LAST_TAT, _LEASES).

docs/limits.md lists the values and settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.db import condition_failed
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
# Commands this container took from the stored bucket ahead of use: (left, valid until ms).
# Tokens a container leases and never uses count as used (at most LEASE - 1 each), and
# a lease lapses after LEASE_MS so saved tokens cannot stack onto a later burst.
_LEASES: dict[str, tuple[int, int]] = {}
LEASE = 5
LEASE_MS = 1000
_LOCK = threading.Lock()


def charge(connection_id: str, limit: RateLimit, now_ms: int) -> Verdict:
    """Charge one command to the connection's bucket.

    Usually no I/O: a container takes LEASE commands' worth of the stored bucket at
    once (one conditional UpdateItem) and admits them locally for LEASE_MS. Near the
    burst it charges one command at a time, and past it refuses from its own view.
    """
    interval = limit.interval_ms
    size = max(1, min(LEASE, limit.burst))

    with _LOCK:
        remaining, valid_until = _LEASES.get(connection_id, (0, 0))
        if remaining > 0 and now_ms < valid_until:
            _LEASES[connection_id] = (remaining - 1, valid_until)
            return Verdict(True, False, 0)
        last = _LAST_TAT.get(connection_id)
        if last is not None and last + interval - now_ms > limit.soft_ms:
            _remember(connection_id, last + interval)
            return judge(limit, last + interval, now_ms)

    def update(action: Any, condition: Any) -> int:
        item = Connection(connection_id)
        item.update(actions=[action], condition=condition)
        return int(item.rate_tat or 0)

    def idle(n: int) -> int:
        return update(
            Connection.rate_tat.set(now_ms + n * interval),
            Connection.connection_id.exists()
            & (Connection.rate_tat.does_not_exist() | (Connection.rate_tat <= now_ms)),
        )

    def busy(n: int, ceiling: int) -> int:
        # the new tat stays within `ceiling` of now: a lease only while it fits the
        # burst; one command up to the hard threshold, past which the socket is closing
        return update(
            Connection.rate_tat.set(Connection.rate_tat + n * interval),
            (Connection.rate_tat > now_ms) & (Connection.rate_tat <= now_ms + ceiling - n * interval),
        )

    lease_busy = (lambda: busy(size, limit.soft_ms), size)
    lease_idle = (lambda: idle(size), size)
    likely_busy = last is not None and last > now_ms
    attempts = [lease_busy, lease_idle] if likely_busy else [lease_idle, lease_busy]
    attempts.append((lambda: busy(1, limit.hard_ms + interval), 1))
    for attempt, taken in attempts:
        try:
            tat = attempt()
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            continue
        with _LOCK:
            _remember(connection_id, tat)
            if taken > 1:  # pooled with any lease a concurrent command took meanwhile
                left, until = _LEASES.get(connection_id, (0, 0))
                left = left if now_ms < until else 0
                _LEASES[connection_id] = (left + taken - 1, now_ms + LEASE_MS)
                if len(_LEASES) > 10_000:
                    _LEASES.pop(next(iter(_LEASES)))
        if taken > 1:
            return Verdict(True, False, 0)
        verdict = judge(limit, tat, now_ms)
        return verdict if verdict.allowed else _from_pool(connection_id, now_ms, verdict)
    # No condition held: the record is gone, or the bucket is past the hard threshold.
    try:
        record = Connection.get(connection_id, consistent_read=True)
    except Connection.DoesNotExist:
        raise CommandError(ErrorCode.UNAUTHORIZED, "connection is not registered; reconnect") from None
    tat = int(record.rate_tat or now_ms)
    with _LOCK:
        _remember(connection_id, tat)
    return _from_pool(connection_id, now_ms, judge(limit, tat + interval, now_ms))


def _from_pool(connection_id: str, now_ms: int, refusal: Verdict) -> Verdict:
    """A refused command takes a leased token if a concurrent command pooled one meanwhile."""
    if refusal.close:
        return refusal
    with _LOCK:
        remaining, valid_until = _LEASES.get(connection_id, (0, 0))
        if remaining > 0 and now_ms < valid_until:
            _LEASES[connection_id] = (remaining - 1, valid_until)
            return Verdict(True, False, 0)
    return refusal


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
    with _LOCK:
        _LAST_TAT.pop(connection_id, None)
        _LEASES.pop(connection_id, None)
