"""**Pure.** What one of Chime's attendee events (joined, left, dropped) does to a member.

Chime sends "Chime Meeting State Change" events to EventBridge when an attendee's audio
connection comes up (`chime:AttendeeJoined`), ends on purpose (`chime:AttendeeLeft`) or is
lost (`chime:AttendeeDropped`: no packets for 10-15 s; a restored connection sends
AttendeeJoined again, and one leave never sends both Left and Dropped).
https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html

The socket and the audio are two connections. The socket gone while the audio is up is a
member still listening (API Gateway closes sockets after 2 h and after 10 min idle): the
reconnect grace becomes the audio hold. The audio left on purpose while the socket is gone is
a member who has gone: they leave now. Audio dropped: the grace runs as for a dropped socket.
With the socket up the member is present whatever the audio does; only the state is kept.

EventBridge delivers at least once and in no set order: an event older than (or as old as)
the last one applied to the member changes nothing, and so does an event for an attendee
the member no longer holds or for a meeting that is not the space's current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.models import Member

JOINED, LEFT, DROPPED = "joined", "left", "dropped"
AUDIO_OF_EVENT = {
    "chime:AttendeeJoined": JOINED,
    "chime:AttendeeLeft": LEFT,
    "chime:AttendeeDropped": DROPPED,
}


@dataclass(frozen=True)
class AudioEvent:
    audio: str  # JOINED | LEFT | DROPPED
    meeting_id: str
    attendee_id: str
    at_ms: int  # Chime's event timestamp (epoch milliseconds)

    @property
    def at(self) -> float:
        return self.at_ms / 1000


def parse(detail: dict[str, Any]) -> AudioEvent | None:
    """The attendee event in an EventBridge detail, or None if it is not one we can order."""
    audio = AUDIO_OF_EVENT.get(str(detail.get("eventType", "")))
    meeting_id, attendee_id = detail.get("meetingId"), detail.get("attendeeId")
    at_ms = detail.get("timestamp")
    if audio is None or not isinstance(meeting_id, str) or not isinstance(attendee_id, str):
        return None
    if isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms <= 0:
        return None  # no time, no order: nothing safe to do
    return AudioEvent(audio, meeting_id, attendee_id, at_ms)


@dataclass(frozen=True)
class Action:
    """`kind`: "ignore" (with `why`), "record" (the audio state, and `away_until` when the member
    is away), or "leave" (record, then leave at once)."""

    kind: str
    why: str = ""
    away_until: float | None = None


def decide(
    event: AudioEvent,
    member: Member | None,
    current_meetings: set[str],
    *,
    now: float,
    grace: float,
    hold: float,
) -> Action:
    """The member as read, the ids of the space's current meetings (primary and replicas), the
    reconnect grace and the audio hold (seconds) → what to do."""
    if member is None or not member.present or member.removed:
        return Action("ignore", "not present")
    if member.attendee_id != event.attendee_id or member.meeting_id != event.meeting_id:
        return Action("ignore", "stale attendee")
    if event.meeting_id not in current_meetings:
        return Action("ignore", "older meeting")
    if member.audio_at is not None and int(member.audio_at) >= event.at_ms:
        return Action("ignore", "older or duplicate")
    away = member.connection_id is None and member.away_until is not None
    if not away:
        return Action("record")  # the socket is up: present whatever the audio does
    until = float(member.away_until or 0)
    if event.audio == LEFT:
        return Action("leave")
    if event.audio == JOINED:
        # Listening without a socket: held for `hold` from the audio's (re)join, never less
        # than what the member had.
        return Action("record", away_until=max(until, event.at + hold))
    # Dropped: the normal grace from now (when we learn of it), never more than was left.
    return Action("record", away_until=min(until, now + grace))


def away_for(audio: str | None, *, grace: float, hold: float) -> float:
    """How long a member whose socket just dropped stays: the hold while their audio is up."""
    return max(grace, hold) if audio == JOINED else grace
