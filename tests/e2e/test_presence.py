"""Real presence from Chime's attendee events: the socket and the audio are two connections.

API Gateway closes every socket after 2 h and after 10 min idle while the audio goes on. Chime
says when an attendee's audio connection comes up (chime:AttendeeJoined), ends on purpose
(AttendeeLeft) or is lost (AttendeeDropped), on EventBridge
(https://docs.aws.amazon.com/chime-sdk/latest/dg/using-events.html). The stack's media server
sends those events when real WHIP sessions connect, leave (DELETE) or fail, and delivers them to
the app's rule (app.py on_chime_event). Before: a listener whose socket closed left when the
reconnect grace ran out, audio or not, and a listener who stopped listening with the socket gone
counted for the whole grace.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from conftest import Clients, Room, local_media, schedules_paused, until

from devstack.media.whip_client import WhipPeer

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]

GRACE = 1  # seconds; the test stack's sweep runs every 0.5 s


def member(space_id: str, user_id: str) -> Any:
    from chalicelib.models import Member

    return Member.get(space_id, user_id, consistent_read=True)


def listeners(space_id: str) -> int:
    from chalicelib import counters

    return counters.listeners(space_id)


async def audio(stack: Any, media: dict[str, Any]) -> WhipPeer:
    """A receive-only WHIP session with the join reply's credentials, connected."""
    url = media["Meeting"]["MediaPlacement"]["SignalingUrl"]
    peer = WhipPeer(stack.base_url, url, media["Attendee"]["JoinToken"])
    response = await peer.join()
    assert response.status == 201, (response.status, response.body)
    return peer


async def listening(clients: Clients, room: Room, user: str) -> tuple[Any, WhipPeer, dict[str, Any]]:
    """A listener who joined and connected audio (Chime's AttendeeJoined applied)."""
    client, snap = await clients.join(user, room.sid)
    peer = await audio(clients.stack, snap["media"])
    await until(lambda: member(room.sid, user).audio == "joined", what=f"{user}'s AttendeeJoined applied")
    return client, peer, snap


async def socket_gone(client: Any, space_id: str) -> None:
    """Drop the client's TCP connection (a lost network, API Gateway's idle timeout); wait for $disconnect."""
    client.abort()
    await until(
        lambda: member(space_id, client.user).connection_id is None, what=f"{client.user}'s disconnect"
    )


def redeliver(stack: Any, event: dict[str, Any]) -> str:
    """EventBridge delivers at least once: hand a kept event to the rule's function again, as
    Lambda would (synchronously here, so the test knows when it is done); its outcome."""
    from devstack.stack import LambdaContextFactory

    result = stack.app.handler_map["on_chime_event"](event, LambdaContextFactory("on_chime_event")())
    return str(result["outcome"])


def events_of(stack: Any, event_type: str, attendee_id: str) -> list[dict[str, Any]]:
    return [e for e in stack.media_events.of_type(event_type) if e["detail"]["attendeeId"] == attendee_id]


async def test_a_listener_without_a_socket_stays_while_listening_and_goes_when_the_audio_leaves(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS=str(GRACE))
    room = await Room.open(clients)
    other = await room.listener()
    client, peer, snap = await listening(clients, room, "ear")
    count = listeners(room.sid)
    assert count == 2
    mark = room.host.mark

    await socket_gone(client, room.sid)
    held = member(room.sid, client.user)
    assert held.away_until > time.time() + 3600  # the audio hold (2 h), not the 1 s grace
    await asyncio.sleep(GRACE + 2)  # well past the grace and several sweeps
    still = member(room.sid, client.user)
    assert still.present and still.audio == "joined"
    assert listeners(room.sid) == count
    assert local_media().attendee_by_token(snap["media"]["Attendee"]["JoinToken"]) is not None

    left_at = time.monotonic()
    response = await peer.leave()  # WHIP DELETE: a deliberate leave, chime:AttendeeLeft
    assert response is not None and response.status in (200, 204), response
    await until(lambda: not member(room.sid, client.user).present, what="the listener gone")
    took = time.monotonic() - left_at
    assert listeners(room.sid) == count - 1
    assert local_media().attendee_by_token(snap["media"]["Attendee"]["JoinToken"]) is None  # seat freed
    event = await room.host.event("listeners.count", since=mark, listener_count=count - 1, timeout=10)
    assert event["listener_count"] == count - 1
    assert member(room.sid, other.user).present
    print(f"audio left -> member gone in {took * 1000:.0f} ms")


async def test_audio_dropped_with_the_socket_gone_is_a_blip_the_grace_covers(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS=str(GRACE))
    room = await Room.open(clients)
    client, peer, snap = await listening(clients, room, "blip")
    attendee_id = snap["media"]["Attendee"]["AttendeeId"]
    await socket_gone(client, room.sid)
    assert member(room.sid, client.user).away_until > time.time() + 3600

    await peer.close()  # the peer goes without a WHIP DELETE: the server sees it fail
    await until(
        lambda: events_of(stack, "chime:AttendeeDropped", attendee_id), timeout=40, what="AttendeeDropped"
    )
    assert not events_of(stack, "chime:AttendeeLeft", attendee_id)  # never both for one leave
    # the grace from the drop, as for a socket, then the sweep: gone
    await until(lambda: not member(room.sid, client.user).present, timeout=GRACE + 5, what="the grace's end")
    assert listeners(room.sid) == 0


async def test_a_dropped_audio_rejoined_within_the_grace_holds_again(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS="30")
    room = await Room.open(clients)
    client, peer, snap = await listening(clients, room, "back")
    attendee_id = snap["media"]["Attendee"]["AttendeeId"]
    await socket_gone(client, room.sid)

    await peer.close()
    await until(lambda: member(room.sid, client.user).audio == "dropped", timeout=40, what="the drop applied")
    assert member(room.sid, client.user).away_until < time.time() + 31  # the grace, not the hold
    peer = await audio(stack, snap["media"])  # the same attendee's audio again (Chime: Joined)
    await until(lambda: member(room.sid, client.user).audio == "joined", what="the rejoin applied")
    assert member(room.sid, client.user).away_until > time.time() + 3600

    # Out of order: the drop delivered again after the newer join changes nothing.
    (drop,) = events_of(stack, "chime:AttendeeDropped", attendee_id)
    before = member(room.sid, client.user)
    assert redeliver(stack, drop) == "older or duplicate"
    after = member(room.sid, client.user)
    assert (after.audio, after.audio_at, after.away_until) == (
        before.audio,
        before.audio_at,
        before.away_until,
    )
    await peer.leave()
    await until(lambda: not member(room.sid, client.user).present, what="gone with the audio")


async def test_stale_and_repeated_events_change_nothing(stack: Any, clients: Clients, settings: Any) -> None:
    settings(RECONNECT_GRACE_SECONDS="30")
    room = await Room.open(clients)
    client, first_peer, first = await listening(clients, room, "twice")
    old_attendee = first["media"]["Attendee"]["AttendeeId"]

    # The listener leaves (the app deletes the attendee: Chime says it left) and joins again
    # on the same socket: a new attendee.
    await client.send("space.leave", space_id=room.sid)
    await until(lambda: events_of(stack, "chime:AttendeeLeft", old_attendee), what="the old attendee's Left")
    await first_peer.close()
    snap = await client.send("space.join", space_id=room.sid)
    assert snap["media"]["Attendee"]["AttendeeId"] != old_attendee
    peer = await audio(stack, snap["media"])
    new_attendee = snap["media"]["Attendee"]["AttendeeId"]
    await until(lambda: member(room.sid, client.user).audio == "joined", what="the new attendee's Joined")
    await socket_gone(client, room.sid)
    before = member(room.sid, client.user)
    state = (before.present, before.audio, before.audio_at, before.away_until, before.attendee_id)

    (old_left,) = events_of(stack, "chime:AttendeeLeft", old_attendee)
    (old_joined,) = events_of(stack, "chime:AttendeeJoined", old_attendee)
    (joined,) = events_of(stack, "chime:AttendeeJoined", new_attendee)
    assert redeliver(stack, old_left) == "stale attendee"  # would be a leave now, if it were current
    assert redeliver(stack, old_joined) == "stale attendee"
    assert redeliver(stack, joined) == "older or duplicate"
    after = member(room.sid, client.user)
    assert (after.present, after.audio, after.audio_at, after.away_until, after.attendee_id) == state
    assert listeners(room.sid) == 1
    await peer.leave()
    await until(lambda: not member(room.sid, client.user).present, what="gone with the audio")


async def test_events_for_unknown_meetings_spaces_and_attendees_are_ignored(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS="30")
    room = await Room.open(clients)
    client, peer, snap = await listening(clients, room, "known")
    (joined,) = events_of(stack, "chime:AttendeeJoined", snap["media"]["Attendee"]["AttendeeId"])

    def variant(**detail: Any) -> dict[str, Any]:
        return {**joined, "detail": {**joined["detail"], "eventType": "chime:AttendeeLeft", **detail}}

    # a space that does not exist, a meeting of nobody's, an attendee nobody was given
    assert redeliver(stack, variant(externalMeetingId="feedfacefeedface-g1")) == "unknown space"
    assert redeliver(stack, variant(attendeeId="00000000-0000-0000-0000-000000000000")) == "stale attendee"
    assert redeliver(stack, variant(externalUserId="p:9.99")) == "unknown attendee"
    assert redeliver(stack, variant(externalUserId="u:nobody")) == "not present"
    assert redeliver(stack, variant(externalUserId="b:!!")) == "unknown attendee"  # not ours
    # a listener's attendee is pooled: found by its meeting and ExternalUserId, so in another
    # meeting it is nobody's
    assert snap["media"]["Attendee"]["ExternalUserId"].startswith("p:")
    assert redeliver(stack, variant(meetingId="00000000-0000-0000-0000-000000000000")) == "unknown attendee"
    assert redeliver(stack, variant(timestamp=None)) == "ignored"  # no time, no order
    still = member(room.sid, client.user)
    assert still.present and still.audio == "joined"
    await peer.close()


async def test_an_attendee_event_costs_key_lookups_and_one_write(
    stack: Any, clients: Clients, settings: Any, aws_calls: Any
) -> None:
    """What each event costs (docs/performance.md): a pooled listener's event is three GetItems
    (space, the Holder of the pooled attendee, member) and one conditional UpdateItem; a repeat
    only the reads. Never a Query or a Scan over the space's members."""
    settings(RECONNECT_GRACE_SECONDS="30")
    room = await Room.open(clients)
    client, peer, snap = await listening(clients, room, "cost")
    (joined,) = events_of(stack, "chime:AttendeeJoined", snap["media"]["Attendee"]["AttendeeId"])
    later = {**joined, "detail": {**joined["detail"], "timestamp": joined["detail"]["timestamp"] + 1}}
    later["detail"]["eventType"] = "chime:AttendeeDropped"

    def counted(event: dict[str, Any]) -> tuple[str, dict[str, int]]:
        with aws_calls.this_thread() as calls:
            outcome = redeliver(stack, event)
        return outcome, dict(calls)

    with schedules_paused(stack):
        outcome, applied = await asyncio.to_thread(counted, later)
        assert outcome == "audio dropped"
        outcome, repeated = await asyncio.to_thread(counted, later)
        assert outcome == "older or duplicate"
        started = time.perf_counter()
        for _ in range(20):
            await asyncio.to_thread(redeliver, stack, later)
        print(f"a repeated event: {(time.perf_counter() - started) / 20 * 1000:.1f} ms per invocation")
    # (only the handler's own thread is counted: the stack's pollers run alongside)
    kinds = ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:Scan", "chime")
    assert {k: n for k, n in applied.items() if k.startswith(kinds)} == {
        "dynamodb:GetItem": 3,
        "dynamodb:UpdateItem": 1,
    }, applied
    assert {k: n for k, n in repeated.items() if k.startswith(kinds)} == {"dynamodb:GetItem": 3}, repeated
    assert member(room.sid, client.user).present  # the socket is up: present whatever the audio does
    await peer.close()


async def test_the_stage_shows_who_is_really_connected_and_listeners_never_broadcast(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """Someone on stage: their audio state goes on their stage entry and out with stage.changed
    (reason "audio"; at most 13 people). A listener's audio events are never announced."""
    settings(RECONNECT_GRACE_SECONDS="30")
    room = await Room.open(clients)
    speaker, snap = await clients.join("voice", room.sid)
    await room.promote(speaker, "speaker")
    mark = room.host.mark
    peer = await audio(stack, snap["media"])
    event = await room.host.event("stage.changed", since=mark, reason="audio", user_id=speaker.user)
    (entry,) = [e for e in event["stage"] if e["user_id"] == speaker.user]
    assert entry["audio_state"] == "joined" and entry["present"]

    mark = room.host.mark
    await peer.close()  # lost, not left
    event = await room.host.event(
        "stage.changed", since=mark, reason="audio", user_id=speaker.user, timeout=40
    )
    (entry,) = [e for e in event["stage"] if e["user_id"] == speaker.user]
    assert entry["audio_state"] == "dropped" and entry["present"]  # the socket is up: still on stage
    assert (await room.get())["stage"][1]["audio_state"] == "dropped"

    mark = room.host.mark
    listener, peer_l, _ = await listening(clients, room, "quiet")
    await peer_l.leave()
    await until(lambda: member(room.sid, listener.user).audio == "left", what="the listener's Left applied")
    await room.host.drain(0.3)
    assert [e for e in room.host.events("stage.changed", since=mark) if e["reason"] == "audio"] == []
    assert member(room.sid, listener.user).present  # the socket is up: still listening, as far as we know
