"""The connection's rate limit and token lifetime as pure rules (chalicelib/gate.py)."""

from __future__ import annotations

import pytest

from chalicelib.gate import RateLimit, judge, token_expired

LIMIT = RateLimit(rate_per_second=10, burst=20, hard=50)  # the defaults: 100 ms per command


def _run(commands: int, now: int = 1_000_000, tat: int | None = None) -> list:
    """Charge `commands` at the same instant, as the store does: tat' = max(tat, now) + T."""
    verdicts = []
    for _ in range(commands):
        tat = max(tat or now, now) + LIMIT.interval_ms
        verdicts.append(judge(LIMIT, tat, now))
    return verdicts


def test_a_burst_is_admitted_then_refused_with_an_honest_wait() -> None:
    verdicts = _run(LIMIT.burst + 1)
    assert all(v.allowed for v in verdicts[: LIMIT.burst])
    refused = verdicts[LIMIT.burst]
    assert not refused.allowed and not refused.close
    # the bucket is 21 commands deep; the next fits once 2 have drained
    assert refused.retry_after_ms == 2 * LIMIT.interval_ms


def test_hard_commands_past_the_burst_close_the_connection() -> None:
    verdicts = _run(LIMIT.burst + LIMIT.hard + 1)
    assert not any(v.close for v in verdicts[: LIMIT.burst + LIMIT.hard])
    assert verdicts[-1].close and not verdicts[-1].allowed


def test_a_steady_client_at_the_rate_is_always_admitted() -> None:
    tat = None
    for i in range(1000):
        now = 1_000_000 + i * LIMIT.interval_ms
        tat = max(tat or now, now) + LIMIT.interval_ms
        assert judge(LIMIT, tat, now).allowed


@pytest.mark.parametrize(
    ("rate", "burst", "hard", "interval"), [(10, 20, 50, 100), (3, 5, 5, 333), (2000, 1, 1, 1)]
)
def test_the_interval_is_whole_milliseconds_never_zero(
    rate: float, burst: int, hard: int, interval: int
) -> None:
    limit = RateLimit(rate, burst, hard)
    assert limit.interval_ms == interval
    assert limit.soft_ms == burst * interval and limit.hard_ms == (burst + hard) * interval


def test_token_expiry_is_inclusive_and_a_missing_exp_never_expires() -> None:
    assert token_expired(100, 100.0)
    assert token_expired(100, 100.5)
    assert not token_expired(100, 99.999)
    assert not token_expired(None, 10**12)
