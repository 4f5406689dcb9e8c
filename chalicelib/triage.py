"""Triage rules: how reports group into cases, how urgent a case is, what an admin may do to it.

Pure functions over plain data (no AWS, no I/O); moderation.py and admin.py do the I/O.

Priority of an open case is the highest of:
- the severity of any category reported: `violence` and `self_harm` are high (a
  live room may be where someone is about to be hurt, which cannot wait for the
  queue); `harassment`, `hate` and `sexual_content` are normal; `spam`,
  `impersonation` and `other` are low. `hate` is normal on its own because it
  is the category most often filed in plain disagreements; when a room really
  turns hateful several people report it, and the crowd rule makes it high;
- the crowd rule: at least 3 distinct reporters within any 10-minute window
  makes the case high.
Priority never falls while the case is open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chalicelib.errors import CommandError, ErrorCode

PRIORITIES = ("low", "normal", "high")
HIGH_SEVERITY = frozenset({"violence", "self_harm"})
NORMAL_SEVERITY = frozenset({"harassment", "hate", "sexual_content"})
CROWD_REPORTERS = 3
CROWD_WINDOW_SECONDS = 600
RECENT_KEEP = 50  # (time, reporter) pairs a case keeps for the crowd rule

OPEN = "open"
CLOSED = "closed"
TARGET_TYPES = ("user", "space")

ACTIONS = ("dismiss", "warn", "remove_from_space", "end_space", "suspend", "lift_suspension")
# Every action but lifting a suspension resolves the case: the first admin to act wins,
# and anyone acting on the closed case afterwards gets a conflict.
CLOSING_ACTIONS = frozenset({"dismiss", "warn", "remove_from_space", "end_space", "suspend"})
USER_ACTIONS = frozenset({"warn", "remove_from_space", "suspend", "lift_suspension"})
SUSPEND_MIN_SECONDS = 60
SUSPEND_MAX_SECONDS = 365 * 24 * 60 * 60


# -- targets -------------------------------------------------------------------


def target_key(space_id: str, user_id: str | None) -> str:
    """A report about a person is about them, wherever it happened; otherwise about the space."""
    return f"user#{user_id}" if user_id else f"space#{space_id}"


def split_target(key: str) -> tuple[str, str]:
    kind, _, ident = key.partition("#")
    if kind not in TARGET_TYPES or not ident:
        raise ValueError(f"not a target key: {key!r}")
    return kind, ident


# -- priority --------------------------------------------------------------------


def rank(priority: str) -> int:
    return PRIORITIES.index(priority)


def highest(priorities: Iterable[str]) -> str:
    return max(priorities, key=rank, default="low")


def category_priority(category: str) -> str:
    if category in HIGH_SEVERITY:
        return "high"
    if category in NORMAL_SEVERITY:
        return "normal"
    return "low"


def crowd_size(recent: Sequence[Sequence[Any]], window_seconds: float = CROWD_WINDOW_SECONDS) -> int:
    """The most distinct reporters found in any window of `window_seconds` ([time, reporter] pairs)."""
    events = sorted((float(t), str(r)) for t, r in recent)
    best = 0
    start = 0
    for end in range(len(events)):
        while events[end][0] - events[start][0] > window_seconds:
            start += 1
        best = max(best, len({r for _, r in events[start : end + 1]}))
    return best


def priority_for(
    categories: Iterable[str], recent: Sequence[Sequence[Any]], current: str | None = None
) -> str:
    by_category = highest(category_priority(c) for c in categories)
    by_crowd = "high" if crowd_size(recent) >= CROWD_REPORTERS else "low"
    return highest([by_category, by_crowd, current or "low"])


def add_recent(
    recent: Sequence[Sequence[Any]], at: float, reporter: str, keep: int = RECENT_KEEP
) -> list[list[Any]]:
    """The case's recent reports with this one, oldest first, at most `keep` of the latest."""
    merged = sorted([[float(t), str(r)] for t, r in recent] + [[float(at), reporter]])
    return merged[-keep:]


# -- admin actions -----------------------------------------------------------------


def check_action(action: str, target_type: str, status: str) -> None:
    """May this action be taken on a case of this target type and status? CommandError if not."""
    if action not in ACTIONS:
        raise CommandError(ErrorCode.BAD_REQUEST, f"action must be one of {', '.join(ACTIONS)}")
    if action in USER_ACTIONS and target_type != "user":
        raise CommandError(ErrorCode.BAD_REQUEST, f"{action} applies to cases about a user")
    if action in CLOSING_ACTIONS and status != OPEN:
        raise CommandError(ErrorCode.CONFLICT, "the case is already closed")


def same_request(entry: Mapping[str, Any], admin_id: str, request: Mapping[str, Any]) -> bool:
    """Is this recorded action the same admin making the same request (a retry)?"""
    return entry.get("admin_id") == admin_id and entry.get("request") == dict(request)


def find_repeat(
    actions: Sequence[Mapping[str, Any]], admin_id: str, request: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    for entry in actions:
        if same_request(entry, admin_id, request):
            return entry
    return None
