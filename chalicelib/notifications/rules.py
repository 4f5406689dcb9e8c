"""What a notification is and who gets it: pure functions over plain data, no AWS."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, StrictStr, field_validator

KINDS = ("live", "cancelled", "rescheduled")
PLATFORMS = ("apns", "apns_sandbox", "fcm")
# SNS's message structure key for each platform (FCM is still "GCM" in SNS).
# https://docs.aws.amazon.com/sns/latest/dg/sns-send-custom-platform-specific-payloads-mobile-devices.html
SNS_KEYS = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}
INBOX_DAYS = 30
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Event:
    """Something to tell people about one space, as it travels on the notify queue."""

    kind: str  # live | cancelled | rescheduled
    space_id: str
    title: str
    actor_id: str  # the host, or the co-host whose followers are told
    host_id: str
    created_at: str  # ISO time; the same for everyone told
    scheduled_start: str | None = None

    @property
    def notification_id(self) -> str:
        """The inbox key, and what makes it once per user: one `live` per space (whoever's
        followers, whatever reminder), one `rescheduled` per new time."""
        if self.kind == "rescheduled":
            return f"{self.space_id}:rescheduled:{self.scheduled_start}"
        return f"{self.space_id}:{self.kind}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        event = cls(**data)
        if event.kind not in KINDS:
            raise ValueError(f"unknown notification kind {event.kind!r}")
        return event


def public(event: Event, read: bool = False) -> dict[str, Any]:
    """A notification as the inbox and the `notification` socket event show it."""
    return {
        "id": event.notification_id,
        "kind": event.kind,
        "space_id": event.space_id,
        "title": event.title,
        "actor_id": event.actor_id,
        "scheduled_start": event.scheduled_start,
        "created_at": event.created_at,
        "read": read,
    }


def text(event: Event) -> str:
    if event.kind == "live":
        return f"{event.actor_id} is live: {event.title}"
    if event.kind == "cancelled":
        return f"Cancelled: {event.title}"
    return f"{event.title} now starts at {event.scheduled_start}"


def push_message(event: Event) -> str:
    """The SNS Publish message (MessageStructure=json): one payload per platform."""
    body = text(event)
    data = {"notification_id": event.notification_id, "space_id": event.space_id, "kind": event.kind}
    apns = json.dumps({"aps": {"alert": {"title": "sohbet", "body": body}, "sound": "default"}, **data})
    fcm = json.dumps({"notification": {"title": "sohbet", "body": body}, "data": data})
    return json.dumps({"default": body, "APNS": apns, "APNS_SANDBOX": apns, "GCM": fcm})


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def audience(candidates: Iterable[str], excluded: set[str]) -> list[str]:
    """Candidates once each, in order, without the excluded (blocked by the host or the
    actor, muting the actor, the actor themself)."""
    return [u for u in dict.fromkeys(candidates) if u not in excluded]


def device_id(token: str) -> str:
    """A device's id: its token's hash (the token itself is never shown again)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


# -- quiet hours -----------------------------------------------------------------


class QuietHours(BaseModel):
    """No pushes from `start` to `end` (local time in `tz`); `start` after `end` spans midnight."""

    model_config = ConfigDict(extra="forbid")

    start: StrictStr
    end: StrictStr
    tz: StrictStr = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.fullmatch(value):
            raise ValueError("must be HH:MM, 00:00-23:59")
        return value

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not 1 <= len(value) <= 64:
            raise ValueError("must be an IANA time zone name, e.g. Europe/Istanbul")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name, e.g. Europe/Istanbul") from None
        return value


def in_quiet_hours(quiet: dict[str, Any] | None, now: datetime | None = None) -> bool:
    """Whether `now` falls in the user's quiet hours (start inclusive, end exclusive)."""
    if not quiet:
        return False
    now = now or datetime.now(tz=UTC)
    local = now.astimezone(ZoneInfo(quiet.get("tz") or "UTC")).time().replace(second=0, microsecond=0)
    start, end = _hhmm(quiet["start"]), _hhmm(quiet["end"])
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))
