"""The quota rule (chalicelib/quotas.py): GCRA over a window, pure; the store is tested end to end."""

from __future__ import annotations

from chalicelib import quotas
from chalicelib.errors import ErrorCode

SIX_AN_HOUR = quotas.Quota("live_spaces", "live spaces", 6, 3600)
NOW = 1_000_000_000


def test_a_fresh_bucket_admits_a_whole_window_at_once() -> None:
    tat = None
    for _ in range(6):
        assert quotas.admits(SIX_AN_HOUR, tat, NOW)
        tat = max(tat or 0, NOW) + SIX_AN_HOUR.interval_ms
    assert not quotas.admits(SIX_AN_HOUR, tat, NOW)


def test_one_more_fits_once_one_interval_has_passed() -> None:
    full = NOW + SIX_AN_HOUR.window_ms
    assert not quotas.admits(SIX_AN_HOUR, full, NOW + SIX_AN_HOUR.interval_ms - 1)
    assert quotas.admits(SIX_AN_HOUR, full, NOW + SIX_AN_HOUR.interval_ms)


def test_the_refusal_says_when_to_come_back() -> None:
    full = NOW + SIX_AN_HOUR.window_ms
    error = quotas.refusal(SIX_AN_HOUR, full, NOW)
    assert error.code == ErrorCode.RATE_LIMITED
    assert error.data == {"retry_after_ms": 600_000, "limit": 6, "window_seconds": 3600}
    assert error.message == "at most 6 live spaces per hour; try again later"
    assert quotas.retry_after_ms(SIX_AN_HOUR, full, NOW + 600_000) == 0


def test_an_idle_bucket_does_not_save_up_past_its_window() -> None:
    long_ago = NOW - 10 * SIX_AN_HOUR.window_ms
    assert quotas.admits(SIX_AN_HOUR, long_ago, NOW)
    assert quotas.retry_after_ms(SIX_AN_HOUR, long_ago, NOW) == 0


def test_keys_never_collide_with_a_user_id() -> None:
    from chalicelib.auth import USER_ID_RE

    assert not USER_ID_RE.fullmatch(quotas.key(SIX_AN_HOUR, "ada"))


def test_a_bucket_expires_only_once_it_is_full_again() -> None:
    """TTL may delete the item from `expires_at` on: by then even a bucket emptied by the take
    made at `now` (tat = now + window) admits a whole window at once, as a missing item does."""
    for now in (NOW, NOW + 1, NOW + 999):
        at = quotas.expires_at(SIX_AN_HOUR, now) * 1000
        tat: int | None = now + SIX_AN_HOUR.window_ms
        for _ in range(SIX_AN_HOUR.count):
            assert quotas.admits(SIX_AN_HOUR, tat, at)
            tat = max(tat or 0, at) + SIX_AN_HOUR.interval_ms
        assert not quotas.admits(SIX_AN_HOUR, tat, at)
    # and not much later: the item is gone about one window after the take
    assert quotas.expires_at(SIX_AN_HOUR, NOW) <= (NOW + SIX_AN_HOUR.window_ms) // 1000 + 2
