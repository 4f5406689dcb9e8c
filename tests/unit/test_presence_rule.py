"""What one of Chime's attendee events does to a member (chalicelib/spaces/presence.py).

No AWS: the member is a PynamoDB item built in memory; `decide` does no I/O. Event shapes as on
https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.models import Member
from chalicelib.spaces import presence
from chalicelib.spaces.presence import DROPPED, JOINED, LEFT, Action, AudioEvent

NOW = 1_800_000_000.0
GRACE, HOLD = 60.0, 7200.0
MEETINGS = {"m1", "r1"}  # the space's primary and a replica


def member(**kw: Any) -> Member:
    """Present on a socket, holding attendee a1 of meeting m1, audio state unknown."""
    values: dict[str, Any] = {
        "present": True,
        "removed": False,
        "connection_id": "c1",
        "attendee_id": "a1",
        "meeting_id": "m1",
    }
    values.update(kw)
    return Member("s1", "ada", role="listener", **values)


def away(**kw: Any) -> Member:
    """The socket dropped 10 s ago: the plain grace runs."""
    return member(**{"connection_id": None, "away_until": NOW + GRACE - 10, **kw})


def event(audio: str, at: float = NOW, attendee: str = "a1", meeting: str = "m1") -> AudioEvent:
    return AudioEvent(audio, meeting, attendee, int(at * 1000))


def decide(ev: AudioEvent, m: Member | None, meetings: set[str] = MEETINGS) -> Action:
    return presence.decide(ev, m, meetings, now=NOW, grace=GRACE, hold=HOLD)


# -- the socket is up: present whatever the audio does ------------------------------


@pytest.mark.parametrize("audio", [JOINED, LEFT, DROPPED])
def test_with_the_socket_up_the_audio_state_is_recorded_and_nothing_else(audio: str) -> None:
    assert decide(event(audio), member()) == Action("record")


# -- the socket is gone -------------------------------------------------------------


def test_audio_joined_while_away_holds_the_member_from_the_audio_join() -> None:
    action = decide(event(JOINED, at=NOW - 5), away())
    assert action == Action("record", away_until=NOW - 5 + HOLD)


def test_audio_joined_never_shortens_a_longer_hold() -> None:
    held = away(away_until=NOW + HOLD + 100)
    assert decide(event(JOINED), held).away_until == NOW + HOLD + 100


def test_audio_left_while_away_is_a_leave_now() -> None:
    assert decide(event(LEFT), away(audio=JOINED, audio_at=int((NOW - 60) * 1000))) == Action("leave")


def test_audio_dropped_while_held_falls_back_to_the_grace_from_now() -> None:
    held = away(away_until=NOW + HOLD, audio=JOINED, audio_at=int((NOW - 60) * 1000))
    assert decide(event(DROPPED, at=NOW - 12), held) == Action("record", away_until=NOW + GRACE)


def test_audio_dropped_never_lengthens_a_shorter_grace() -> None:
    # the socket's grace has 50 s left: a drop learnt of now does not add to it
    assert decide(event(DROPPED), away()).away_until == NOW + GRACE - 10


# -- events that change nothing -----------------------------------------------------


@pytest.mark.parametrize("audio", [JOINED, LEFT, DROPPED])
def test_an_event_for_another_attendee_of_the_member_changes_nothing(audio: str) -> None:
    # the member rejoined (another device, a renewed meeting, a promotion): the old attendee's
    # events are stale, whatever they say
    assert decide(event(audio, attendee="a0"), away()) == Action("ignore", "stale attendee")
    assert decide(event(audio, meeting="m0"), away()) == Action("ignore", "stale attendee")


def test_an_event_for_an_older_meeting_generation_changes_nothing() -> None:
    # the member still holds the attendee of a meeting the space has replaced (Chime ended it)
    old = away(meeting_id="m0", attendee_id="a0")
    assert decide(event(LEFT, attendee="a0", meeting="m0"), old) == Action("ignore", "older meeting")


@pytest.mark.parametrize(
    "who",
    [None, member(present=False), member(removed=True), member(present=False, attendee_id=None)],
    ids=["no member", "left", "removed", "left, no attendee"],
)
def test_an_event_for_someone_not_present_changes_nothing(who: Member | None) -> None:
    assert decide(event(LEFT), who) == Action("ignore", "not present")


def test_a_duplicate_changes_nothing() -> None:
    applied = away(audio=LEFT, audio_at=int(NOW * 1000))
    assert decide(event(LEFT), applied) == Action("ignore", "older or duplicate")


def test_an_event_older_than_the_last_applied_changes_nothing() -> None:
    # Joined at NOW was applied; the Left from before it (the audio came back) arrives late
    rejoined = away(audio=JOINED, audio_at=int(NOW * 1000), away_until=NOW + HOLD)
    assert decide(event(LEFT, at=NOW - 1), rejoined) == Action("ignore", "older or duplicate")
    assert decide(event(DROPPED, at=NOW - 1), rejoined) == Action("ignore", "older or duplicate")


def test_out_of_order_delivery_ends_where_the_newest_event_says() -> None:
    """Chime's own sequence (joined, dropped, joined again, left), delivered in every order: the
    member ends as the newest event says, whatever arrived before it."""
    import itertools

    def apply(order: tuple[AudioEvent, ...]) -> tuple[str, str | None, float | None]:
        state = away()
        for ev in order:
            action = decide(ev, state)
            if action.kind == "leave":
                return "left", None, None
            if action.kind == "record":
                until = action.away_until if action.away_until is not None else state.away_until
                state = away(audio=ev.audio, audio_at=ev.at_ms, away_until=until)
        return "away", state.audio, state.away_until

    blip = [event(JOINED, NOW - 30), event(DROPPED, NOW - 20), event(JOINED, NOW - 10)]
    # listening again after the blip: held from the newest join, whatever the order
    assert {apply(order) for order in itertools.permutations(blip)} == {("away", JOINED, NOW - 10 + HOLD)}
    ended = [*blip, event(LEFT, NOW)]
    assert {apply(order) for order in itertools.permutations(ended)} == {("left", None, None)}


# -- the socket drops ---------------------------------------------------------------


def test_a_socket_that_drops_while_the_audio_is_up_is_held() -> None:
    assert presence.away_for(JOINED, grace=GRACE, hold=HOLD) == HOLD
    assert presence.away_for(JOINED, grace=GRACE, hold=0) == GRACE  # the hold never shortens the grace
    for audio in (None, LEFT, DROPPED):
        assert presence.away_for(audio, grace=GRACE, hold=HOLD) == GRACE


# -- parsing ------------------------------------------------------------------------


def detail(**kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "version": "0",
        "eventType": "chime:AttendeeDropped",
        "timestamp": 1_800_000_000_123,
        "meetingId": "m1",
        "attendeeId": "a1",
        "externalUserId": "p:0.5",
        "networkType": "Voip",
        "externalMeetingId": "s1-g1",
        "mediaRegion": "us-east-1",
    }
    values.update(kw)
    return values


def test_an_attendee_event_is_parsed() -> None:
    assert presence.parse(detail()) == AudioEvent(DROPPED, "m1", "a1", 1_800_000_000_123)
    assert presence.parse(detail(eventType="chime:AttendeeJoined")).audio == JOINED  # type: ignore[union-attr]
    assert presence.parse(detail(eventType="chime:AttendeeLeft")).audio == LEFT  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        {"eventType": "chime:AttendeeAdded"},
        {"eventType": "chime:MeetingEnded"},
        {"timestamp": None},
        {"timestamp": "1800000000123"},
        {"timestamp": True},
        {"timestamp": 0},
        {"attendeeId": None},
        {"meetingId": 7},
    ],
)
def test_what_cannot_be_matched_or_ordered_is_not_an_attendee_event(bad: dict[str, Any]) -> None:
    assert presence.parse(detail(**bad)) is None
