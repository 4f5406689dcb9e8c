"""Per-user quotas on actions that cost others or the service something: creating spaces,
filing reports, raising and lowering a hand (docs/limits.md lists the values).

Each quota is a GCRA bucket, as the command rate limit (gate.py): `count` actions per
`window_seconds`, all of them at once if saved up, refilled evenly. The bucket is one
timestamp (`tat`, epoch ms) on an item of the users table keyed `quota#{kind}#{user}` (a
user id never holds `#`, auth.py, so no key is a user's). Taking from it is a conditional
UpdateItem with no read before it, so two racing requests can never both take the last one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from chalicelib.config import get_settings
from chalicelib.db import condition_failed
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import FromSettings


@dataclass(frozen=True)
class Quota:
    kind: str  # live_spaces | scheduled_spaces | reports | hand_toggles
    what: str  # for the message: "live spaces"
    count: int
    window_seconds: int

    @property
    def interval_ms(self) -> int:
        return max(1, (self.window_seconds * 1000) // max(1, self.count))

    @property
    def window_ms(self) -> int:
        return self.interval_ms * max(1, self.count)


def live_spaces() -> Quota:
    return Quota("live_spaces", "live spaces", get_settings().quota_live_spaces_per_hour, 3600)


def scheduled_spaces() -> Quota:
    return Quota("scheduled_spaces", "scheduled spaces", get_settings().quota_scheduled_spaces_per_day, 86400)


def reports() -> Quota:
    return Quota("reports", "reports", get_settings().quota_reports_per_hour, 3600)


def hand_toggles() -> Quota:
    return Quota("hand_toggles", "hand raises and lowers", get_settings().quota_hand_toggles_per_minute, 60)


# -- the rule (pure) -------------------------------------------------------------------


def retry_after_ms(quota: Quota, tat_ms: int, now_ms: int) -> int:
    """How long until one more action fits, given the bucket's stored `tat`."""
    return max(0, tat_ms + quota.interval_ms - quota.window_ms - now_ms)


def admits(quota: Quota, tat_ms: int | None, now_ms: int) -> bool:
    """Whether one more action fits: its charge keeps the bucket within the window."""
    start = max(tat_ms or 0, now_ms)
    return start + quota.interval_ms - now_ms <= quota.window_ms


def refusal(quota: Quota, tat_ms: int, now_ms: int) -> CommandError:
    window = {60: "minute", 3600: "hour", 86400: "day"}.get(quota.window_seconds)
    per = f"per {window}" if window else f"per {quota.window_seconds} s"
    return CommandError(
        ErrorCode.RATE_LIMITED,
        f"at most {quota.count} {quota.what} {per}; try again later",
        {
            "retry_after_ms": retry_after_ms(quota, tat_ms, now_ms),
            "limit": quota.count,
            "window_seconds": quota.window_seconds,
        },
    )


# -- the store -------------------------------------------------------------------------


class QuotaBucket(Model):
    class Meta:
        table_name = FromSettings("users_table")
        region = FromSettings("region")

    user_id = UnicodeAttribute(hash_key=True)  # "quota#{kind}#{user}"
    tat = NumberAttribute(null=True)  # epoch ms
    # TTL, epoch s: by then tat has passed (tat <= now + window after any take), the bucket
    # is full again, and a missing item means the same
    expires_at = NumberAttribute(null=True)


def key(quota: Quota, user_id: str) -> str:
    return f"quota#{quota.kind}#{user_id}"


def expires_at(quota: Quota, now_ms: int) -> int:
    """When a bucket taken from at `now_ms` is full again for sure (epoch s, rounded up)."""
    return -(-(now_ms + quota.window_ms) // 1000) + 1


def take(quota: Quota, user_id: str, now_ms: int | None = None) -> None:
    """Take one action from the user's bucket, or raise `rate_limited` (nothing taken)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    interval = quota.interval_ms
    bucket = QuotaBucket(key(quota, user_id))
    expires = QuotaBucket.expires_at.set(expires_at(quota, now_ms))
    idle: tuple[list[Any], Any] = (
        [QuotaBucket.tat.set(now_ms + interval), expires],
        QuotaBucket.tat.does_not_exist() | (QuotaBucket.tat <= now_ms),
    )
    busy: tuple[list[Any], Any] = (
        [QuotaBucket.tat.set(QuotaBucket.tat + interval), expires],
        (QuotaBucket.tat > now_ms) & (QuotaBucket.tat <= now_ms + quota.window_ms - interval),
    )
    for _ in range(3):  # a bucket that turned idle or busy between the two tries: try again
        for actions, condition in (idle, busy):
            try:
                bucket.update(actions=actions, condition=condition)
                return
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        try:
            tat = int(QuotaBucket.get(bucket.user_id, consistent_read=True).tat or 0)
        except DoesNotExist:
            continue
        if not admits(quota, tat, now_ms):
            raise refusal(quota, tat, now_ms)
    raise refusal(quota, now_ms + quota.window_ms, now_ms)
