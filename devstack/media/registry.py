"""The embedded media server's state: meetings and attendees, as Chime SDK Meetings keeps them.

One in-process, thread-safe registry shared by the Chime REST emulator (`chime_api`)
and the audio side (mixer, WHIP). It holds Chime's rules that are about state
(MaxCount, idempotency keys, replicas ending with their primary, tokens dying with
their attendee, meetings ending on their own); rules about requests (rate limits,
fault injection) live in the REST layer.

Observers (`subscribe`) are told about changes after the lock is released, so they
may call back into the registry; they are called from whichever thread made the
change (a worker thread of the REST emulator, the auto-end ticker, a test), never
from an asyncio event loop. Every method returns immutable snapshots.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

SEND_RECEIVE = "SendReceive"
SEND = "Send"
RECEIVE = "Receive"
NONE = "None"
CAPABILITY_VALUES = frozenset({SEND_RECEIVE, SEND, RECEIVE, NONE})

MAX_ATTENDEES = 250  # MeetingFeatures.Attendee.MaxCount is 1..250

# When a meeting ends on its own. https://docs.aws.amazon.com/chime-sdk/latest/dg/create-mtgs.html :
# after 24 h, and (not a replica) with no attendee connected for more than 5 minutes; a replica ends
# with its primary. The 30-minute rule for fewer than two audio connections is the JS SDK's FAQ,
# https://aws.github.io/amazon-chime-sdk-js/modules/faqs.html#when-does-an-amazon-chime-sdk-meeting-end
NO_AUDIO_TIMEOUT = 5 * 60.0
ONE_AUDIO_TIMEOUT = 30 * 60.0
MAX_MEETING_DURATION = 24 * 3600.0
# Default quota of replica meetings per primary (up to 40 after a quota increase):
# https://docs.aws.amazon.com/chime-sdk/latest/dg/media-replication.html
MAX_REPLICAS = 4


class ChimeError(Exception):
    """A Chime error: `code` is the modeled exception name without "Exception" (NotFound, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(what: str) -> ChimeError:
    return ChimeError("NotFound", f"The requested {what} does not exist.")


@dataclass(frozen=True)
class Meeting:
    meeting_id: str
    external_meeting_id: str | None
    media_region: str
    client_request_token: str
    max_attendees: int
    created_at: float
    primary_meeting_id: str | None = None
    meeting_features: dict[str, Any] = field(default_factory=dict, compare=False)
    tenant_ids: tuple[str, ...] = ()
    meeting_host_id: str | None = None


@dataclass(frozen=True)
class Attendee:
    attendee_id: str
    external_user_id: str
    join_token: str
    meeting_id: str
    audio: str = SEND_RECEIVE
    video: str = SEND_RECEIVE
    content: str = SEND_RECEIVE

    @property
    def capabilities(self) -> dict[str, str]:
        return {"Audio": self.audio, "Video": self.video, "Content": self.content}

    @property
    def may_send_audio(self) -> bool:
        return self.audio in (SEND_RECEIVE, SEND)

    @property
    def may_receive_audio(self) -> bool:
        return self.audio in (SEND_RECEIVE, RECEIVE)


class RegistryObserver(Protocol):
    """What the audio side hears about. Missing methods are simply not called."""

    def capabilities_changed(self, attendee: Attendee) -> None: ...

    def attendee_deleted(self, attendee: Attendee) -> None: ...

    def meeting_deleted(self, meeting: Meeting) -> None: ...


EventSink = Callable[[dict[str, Any]], None]


@dataclass
class _MeetingState:
    meeting: Meeting
    attendees: dict[str, Attendee] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)  # attendee ids with a live audio connection
    last_any_audio: float = 0.0  # last time >= 1 audio connection was present (or creation)
    last_two_audio: float = 0.0  # last time >= 2 were present (or creation)


def check_capabilities(capabilities: dict[str, str], meeting: Meeting | None = None) -> dict[str, str]:
    """Validate a Capabilities structure against Chime's rules; BadRequest otherwise.

    https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_AttendeeCapabilities.html :
    Video (Content) must be None when the meeting's Video (Content) MaxResolution is None, and
    Content may only receive when Video does too.
    """
    out = {}
    for key in ("Audio", "Video", "Content"):
        value = capabilities.get(key)
        if value not in CAPABILITY_VALUES:
            raise ChimeError("BadRequest", f"Invalid Capabilities.{key}: {value!r}")
        out[key] = value
    if meeting is not None:
        for key in ("Video", "Content"):
            if _feature_off(meeting, key) and out[key] != NONE:
                raise ChimeError(
                    "BadRequest",
                    f"Capabilities.{key} must be None: the meeting's {key} MaxResolution is None",
                )
    if out["Content"] in (SEND_RECEIVE, RECEIVE) and out["Video"] not in (SEND_RECEIVE, RECEIVE):
        raise ChimeError("BadRequest", "Content can only receive when Video receives too")
    return out


def default_capabilities(meeting: Meeting) -> dict[str, str]:
    """What an attendee created without Capabilities gets (same page as check_capabilities)."""
    video_off, content_off = _feature_off(meeting, "Video"), _feature_off(meeting, "Content")
    if video_off and not content_off:
        return {"Audio": SEND_RECEIVE, "Video": RECEIVE, "Content": SEND_RECEIVE}
    return {
        "Audio": SEND_RECEIVE,
        "Video": NONE if video_off else SEND_RECEIVE,
        "Content": NONE if content_off else SEND_RECEIVE,
    }


def _feature_off(meeting: Meeting, key: str) -> bool:
    return bool(meeting.meeting_features.get(key, {}).get("MaxResolution") == NONE)


class MediaRegistry:
    """Meetings and attendees of the embedded media server.

    `clock` returns seconds (time.time by default); tests inject a fake one and call
    `tick()` to run the auto-end rules. `event_sink` receives Chime's EventBridge
    events ("Chime Meeting State Change"), called outside the lock.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        region: str = "us-east-1",
        account: str = "123456789012",
        event_sink: EventSink | None = None,
        auto_end: bool = True,
        max_replicas: int | None = MAX_REPLICAS,
    ) -> None:
        self._lock = threading.RLock()
        self._meetings: dict[str, _MeetingState] = {}
        self._by_token: dict[str, tuple[str, str]] = {}  # JoinToken -> (meeting id, attendee id)
        self._observers: list[Any] = []
        self.clock = clock
        self.region = region
        self.account = account
        self.event_sink = event_sink
        self.auto_end = auto_end
        self.max_replicas = max_replicas  # None: no quota
        self.no_audio_timeout = NO_AUDIO_TIMEOUT
        self.one_audio_timeout = ONE_AUDIO_TIMEOUT
        self.max_duration = MAX_MEETING_DURATION

    # ------------------------------------------------------------------ observers

    def subscribe(self, observer: Any) -> Callable[[], None]:
        """Register an observer; returns a function that unsubscribes it."""
        with self._lock:
            self._observers.append(observer)

        def unsubscribe() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)

        return unsubscribe

    def _notify(self, method: str, *args: Any) -> None:
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            callback = getattr(observer, method, None)
            if callback is not None:
                callback(*args)

    def _emit(self, events: Iterable[dict[str, Any]]) -> None:
        sink = self.event_sink
        if sink is None:
            return
        for event in events:
            sink(event)

    # ------------------------------------------------------------------ meetings

    def create_meeting(
        self,
        *,
        client_request_token: str,
        media_region: str,
        external_meeting_id: str | None = None,
        max_attendees: int = MAX_ATTENDEES,
        primary_meeting_id: str | None = None,
        meeting_features: dict[str, Any] | None = None,
        tenant_ids: Iterable[str] = (),
        meeting_host_id: str | None = None,
    ) -> Meeting:
        """Create a meeting, or return the live one created with the same ClientRequestToken."""
        if not 1 <= max_attendees <= MAX_ATTENDEES:
            raise ChimeError("BadRequest", f"MeetingFeatures.Attendee.MaxCount must be 1-{MAX_ATTENDEES}")
        with self._lock:
            for state in self._meetings.values():
                if state.meeting.client_request_token == client_request_token:
                    return state.meeting
            if primary_meeting_id is not None:
                primary = self._meetings.get(primary_meeting_id)
                if primary is None:
                    raise _not_found("primary meeting")
                if primary.meeting.primary_meeting_id is not None:
                    raise ChimeError(
                        "BadRequest", "PrimaryMeetingId must be a primary meeting, not a replica."
                    )
                replicas = sum(
                    1 for s in self._meetings.values() if s.meeting.primary_meeting_id == primary_meeting_id
                )
                if self.max_replicas is not None and replicas >= self.max_replicas:
                    raise ChimeError(
                        "LimitExceeded", f"The primary meeting already has {replicas} replica meetings."
                    )
            now = self.clock()
            meeting = Meeting(
                meeting_id=str(uuid.uuid4()),
                external_meeting_id=external_meeting_id,
                media_region=media_region,
                client_request_token=client_request_token,
                max_attendees=max_attendees,
                created_at=now,
                primary_meeting_id=primary_meeting_id,
                meeting_features=dict(meeting_features or {}),
                tenant_ids=tuple(tenant_ids),
                meeting_host_id=meeting_host_id,
            )
            self._meetings[meeting.meeting_id] = _MeetingState(
                meeting, last_any_audio=now, last_two_audio=now
            )
        self._emit([self._meeting_event(meeting, "chime:MeetingStarted")])
        return meeting

    def get_meeting(self, meeting_id: str) -> Meeting:
        with self._lock:
            return self._state(meeting_id).meeting

    def meeting_exists(self, meeting_id: str) -> bool:
        with self._lock:
            return meeting_id in self._meetings

    def meetings(self) -> dict[str, Meeting]:
        with self._lock:
            return {mid: s.meeting for mid, s in self._meetings.items()}

    def replicas(self, primary_meeting_id: str) -> list[Meeting]:
        with self._lock:
            return [
                s.meeting
                for s in self._meetings.values()
                if s.meeting.primary_meeting_id == primary_meeting_id
            ]

    def delete_meeting(self, meeting_id: str) -> None:
        """End a meeting (NotFound if unknown); a primary's replicas end with it."""
        self._end(meeting_id, "chime:MeetingEnded", raise_missing=True)

    def _end(self, meeting_id: str, event_type: str, *, raise_missing: bool) -> list[Meeting]:
        with self._lock:
            if meeting_id not in self._meetings:
                if raise_missing:
                    raise _not_found("meeting")
                return []
            ids = [mid for mid, s in self._meetings.items() if s.meeting.primary_meeting_id == meeting_id]
            ids.append(meeting_id)  # replicas first, then the primary
            ended = []
            for mid in ids:
                state = self._meetings.pop(mid)
                for attendee in state.attendees.values():
                    self._by_token.pop(attendee.join_token, None)
                ended.append(state.meeting)
        self._emit(self._meeting_event(m, event_type) for m in ended)
        for meeting in ended:
            self._notify("meeting_deleted", meeting)
        return ended

    # ------------------------------------------------------------------ attendees

    def create_attendee(
        self, meeting_id: str, external_user_id: str, capabilities: dict[str, str] | None = None
    ) -> Attendee:
        """Create an attendee; an existing ExternalUserId returns the existing attendee unchanged.

        LimitExceeded once MaxCount attendees exist (they count until deleted).
        """
        with self._lock:
            state = self._state(meeting_id)
            for attendee in state.attendees.values():
                if attendee.external_user_id == external_user_id:
                    return attendee
            caps = check_capabilities(capabilities or default_capabilities(state.meeting), state.meeting)
            if len(state.attendees) >= state.meeting.max_attendees:
                raise ChimeError("LimitExceeded", "The meeting has reached its maximum number of attendees.")
            attendee = Attendee(
                attendee_id=str(uuid.uuid4()),
                external_user_id=external_user_id,
                join_token=_join_token(),
                meeting_id=meeting_id,
                audio=caps["Audio"],
                video=caps["Video"],
                content=caps["Content"],
            )
            state.attendees[attendee.attendee_id] = attendee
            self._by_token[attendee.join_token] = (meeting_id, attendee.attendee_id)
            meeting = state.meeting
        self._emit([self._attendee_event(meeting, attendee, "chime:AttendeeAdded")])
        return attendee

    def get_attendee(self, meeting_id: str, attendee_id: str) -> Attendee:
        with self._lock:
            return self._attendee(meeting_id, attendee_id)

    def list_attendees(self, meeting_id: str) -> list[Attendee]:
        with self._lock:
            return list(self._state(meeting_id).attendees.values())

    def attendees(self, meeting_id: str) -> dict[str, Attendee]:
        """Attendees by id; {} for an unknown meeting (a test helper, never raises)."""
        with self._lock:
            state = self._meetings.get(meeting_id)
            return dict(state.attendees) if state else {}

    def attendee_by_token(self, token: str) -> Attendee | None:
        """The live attendee holding this JoinToken, or None (unknown, deleted, meeting ended)."""
        with self._lock:
            key = self._by_token.get(token)
            if key is None:
                return None
            state = self._meetings.get(key[0])
            return state.attendees.get(key[1]) if state else None

    def delete_attendee(self, meeting_id: str, attendee_id: str) -> None:
        """Delete an attendee (NotFound if unknown); its JoinToken stops working at once."""
        with self._lock:
            state = self._state(meeting_id)
            attendee = state.attendees.pop(attendee_id, None)
            if attendee is None:
                raise _not_found("attendee")
            self._by_token.pop(attendee.join_token, None)
            was_connected = attendee_id in state.connected
            if was_connected:
                self._touch(state.meeting)
                state.connected.discard(attendee_id)
                self._touch(state.meeting)
            meeting = state.meeting
        if was_connected:
            self._emit([self._attendee_event(meeting, attendee, "chime:AttendeeLeft")])
        self._emit([self._attendee_event(meeting, attendee, "chime:AttendeeDeleted")])
        self._notify("attendee_deleted", attendee)

    def update_capabilities(
        self, meeting_id: str, attendee_id: str, capabilities: dict[str, str]
    ) -> Attendee:
        with self._lock:
            state = self._state(meeting_id)
            old = self._attendee(meeting_id, attendee_id)
            caps = check_capabilities(capabilities, state.meeting)
            new = replace(old, audio=caps["Audio"], video=caps["Video"], content=caps["Content"])
            state.attendees[attendee_id] = new
        if new != old:
            self._notify("capabilities_changed", new)
        return new

    def update_capabilities_except(
        self, meeting_id: str, excluded_attendee_ids: Iterable[str], capabilities: dict[str, str]
    ) -> list[Attendee]:
        """Set capabilities on every attendee but the excluded ones; returns those that changed."""
        excluded = set(excluded_attendee_ids)
        changed = []
        with self._lock:
            state = self._state(meeting_id)
            caps = check_capabilities(capabilities, state.meeting)
            for aid, old in list(state.attendees.items()):
                if aid in excluded:
                    continue
                new = replace(old, audio=caps["Audio"], video=caps["Video"], content=caps["Content"])
                if new != old:
                    state.attendees[aid] = new
                    changed.append(new)
        for attendee in changed:
            self._notify("capabilities_changed", attendee)
        return changed

    # ------------------------------------------------------------------ audio connections (mixer/WHIP)

    def audio_connected(self, attendee_id: str) -> None:
        """The attendee's audio connection is up (WHIP session established)."""
        self._set_connected(attendee_id, True, "chime:AttendeeJoined")

    def audio_disconnected(self, attendee_id: str, *, dropped: bool = False) -> None:
        """The attendee's audio connection ended: left on purpose (WHIP DELETE) or dropped."""
        self._set_connected(attendee_id, False, "chime:AttendeeDropped" if dropped else "chime:AttendeeLeft")

    def _set_connected(self, attendee_id: str, connected: bool, event_type: str) -> None:
        with self._lock:
            for state in self._meetings.values():
                attendee = state.attendees.get(attendee_id)
                if attendee is not None:
                    break
            else:
                return
            if (attendee_id in state.connected) == connected:
                return
            self._touch(state.meeting)
            if connected:
                state.connected.add(attendee_id)
            else:
                state.connected.discard(attendee_id)
            self._touch(state.meeting)
            meeting = state.meeting
        self._emit([self._attendee_event(meeting, attendee, event_type)])

    def connected_attendees(self, meeting_id: str) -> set[str]:
        with self._lock:
            state = self._meetings.get(meeting_id)
            return set(state.connected) if state else set()

    def _touch(self, meeting: Meeting) -> None:
        """Note the time if the session (a primary and its replicas) has >= 1 or >= 2 connections.

        Called before and after every connection change, and by tick(). Counting the replicas'
        connections with the primary's is our reading: a stage whose audience sits in
        replicas is not a meeting with fewer than two connections.
        """
        primary_id = meeting.primary_meeting_id or meeting.meeting_id
        primary = self._meetings.get(primary_id)
        if primary is None:
            return
        count = sum(
            len(s.connected)
            for s in self._meetings.values()
            if primary_id in (s.meeting.meeting_id, s.meeting.primary_meeting_id)
        )
        now = self.clock()
        if count >= 1:
            primary.last_any_audio = now
        if count >= 2:
            primary.last_two_audio = now

    # ------------------------------------------------------------------ auto-end

    def tick(self) -> list[Meeting]:
        """End the meetings Chime would have ended by now; returns them. Does nothing if auto_end is off."""
        if not self.auto_end:
            return []
        now = self.clock()
        expired = []
        with self._lock:
            for mid, state in self._meetings.items():
                if state.meeting.primary_meeting_id is not None:
                    continue  # replicas end with their primary
                self._touch(state.meeting)
                if (
                    now - state.meeting.created_at >= self.max_duration
                    or now - state.last_any_audio >= self.no_audio_timeout
                    or now - state.last_two_audio >= self.one_audio_timeout
                ):
                    expired.append(mid)
        ended: list[Meeting] = []
        for mid in expired:
            ended.extend(self._end(mid, "chime:MeetingEnded", raise_missing=False))
        return ended

    def reset(self) -> None:
        """Forget everything without notifying anyone (between tests)."""
        with self._lock:
            self._meetings.clear()
            self._by_token.clear()

    # ------------------------------------------------------------------ internals (lock held)

    def _state(self, meeting_id: str) -> _MeetingState:
        state = self._meetings.get(meeting_id)
        if state is None:
            raise _not_found("meeting")
        return state

    def _attendee(self, meeting_id: str, attendee_id: str) -> Attendee:
        attendee = self._state(meeting_id).attendees.get(attendee_id)
        if attendee is None:
            raise _not_found("attendee")
        return attendee

    # ------------------------------------------------------------------ EventBridge events

    def _envelope(self, detail: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Chime Meeting State Change",
            "source": "aws.chime",
            "account": self.account,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "region": self.region,
            "resources": [],
            "detail": {"version": "0", "timestamp": int(now * 1000), **detail},
        }

    def _meeting_event(self, meeting: Meeting, event_type: str) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "eventType": event_type,
            "meetingId": meeting.meeting_id,
            "mediaRegion": meeting.media_region,
        }
        if meeting.external_meeting_id is not None:
            detail["externalMeetingId"] = meeting.external_meeting_id
        if meeting.primary_meeting_id is not None:
            detail["primaryMeetingId"] = meeting.primary_meeting_id
        return self._envelope(detail)

    def _attendee_event(self, meeting: Meeting, attendee: Attendee, event_type: str) -> dict[str, Any]:
        event = self._meeting_event(meeting, event_type)
        event["detail"]["attendeeId"] = attendee.attendee_id
        event["detail"]["externalUserId"] = attendee.external_user_id
        return event


def _join_token() -> str:
    # Chime's JoinToken is an opaque string of 2-2048 chars; ours is 32 random bytes, URL-safe.
    return secrets.token_urlsafe(32)
