"""Sockets come and go; seats and audio stay.

API Gateway closes every WebSocket after 2 hours and after 10 minutes idle
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), and networks drop.
Before: any $disconnect deleted the attendee (audio cut) and took a speaker off the stage at once.
Now every role gets a reconnect grace (RECONNECT_GRACE_SECONDS): the member keeps seat, count and
attendee, a `space.join` from a new socket resumes without anyone being told, and only when the
grace runs out does the sweep make them leave. Sockets are dropped here at the TCP level through
the local gateway, as a lost network would drop them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Clients, Room, local_media, roles, stored_space, until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


def member(space_id: str, user_id: str) -> Any:
    from chalicelib.models import Member

    return Member.get(space_id, user_id, consistent_read=True)


async def dropped(client: Any, space_id: str) -> None:
    """Drop the client's TCP connection and wait until the app handled its $disconnect."""
    client.abort()
    await until(
        lambda: member(space_id, client.user).connection_id is None, what=f"{client.user}'s disconnect"
    )


async def test_a_speaker_and_a_listener_who_reconnect_resume_unnoticed(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS="60")
    room = await Room.open(clients)
    speaker = await room.speaker()
    listener = await room.listener()
    before = await room.get()
    kept = {c.user: member(room.sid, c.user) for c in (speaker, listener)}
    marks = {c.user: c.mark for c in (room.host, speaker, listener)}

    await dropped(speaker, room.sid)
    await dropped(listener, room.sid)
    registry = local_media()
    for user, m in kept.items():  # the attendees live on: audio goes on
        assert registry.attendee_by_token(m.join_token) is not None, user
    assert roles(await room.get()) == roles(before)

    again = await clients.open(speaker.user)
    snap = await again.send("space.join", space_id=room.sid)
    assert snap["role"] == "speaker"
    assert snap["media"]["Attendee"]["AttendeeId"] == kept[speaker.user].attendee_id
    assert snap["media"]["Attendee"]["JoinToken"] == kept[speaker.user].join_token
    assert registry.attendee_by_token(kept[speaker.user].join_token).audio == "SendReceive"
    back = await clients.open(listener.user)
    snap = await back.send("space.join", space_id=room.sid)
    assert snap["role"] == "listener"
    assert snap["media"]["Attendee"]["AttendeeId"] == kept[listener.user].attendee_id

    after = await room.get()
    assert roles(after) == roles(before) and after["listener_count"] == before["listener_count"]
    # nobody was told anything: no stage change, no host.away, no other count (a count event
    # may still come for the listener's own join, coalesced: it carries the same number)
    await alive_all(room.host)
    for event in ("stage.changed", "host.away"):
        assert room.host.events(event, since=marks[room.host.user]) == [], event
    counts = room.host.events("listeners.count", since=marks[room.host.user])
    assert {e["listener_count"] for e in counts} <= {before["listener_count"]}, counts
    assert member(room.sid, speaker.user).away_until is None


async def test_when_the_grace_runs_out_the_seat_and_the_attendee_go(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS="1")  # the test stack's sweep runs every 0.5 s
    room = await Room.open(clients)
    speaker = await room.speaker()
    token = member(room.sid, speaker.user).join_token
    mark = room.host.mark
    await dropped(speaker, room.sid)
    event = await room.host.event("stage.changed", since=mark, reason="disconnected", timeout=10)
    assert speaker.user not in {e["user_id"] for e in event["stage"]}
    await until(lambda: local_media().attendee_by_token(token) is None, what="the attendee deleted")
    gone = member(room.sid, speaker.user)
    assert not gone.present and gone.away_until is None
    record = await asyncio.to_thread(stored_space, room.sid)
    assert speaker.user not in (record.stage or {})


async def test_the_host_keeps_the_space_through_a_reconnect(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """The host's own grace (hand-over or end) starts only after the reconnect grace: a dropped
    socket that comes back is not even a host.away."""
    settings(RECONNECT_GRACE_SECONDS="60")
    room = await Room.open(clients)
    listener = await room.listener()
    mark = listener.mark
    await dropped(room.host, room.sid)
    await asyncio.sleep(3)  # longer than the test stack's HOST_GRACE_SECONDS=2: the space stays
    assert (await room.get())["state"] == "live"
    host = await clients.open(room.host.user)
    snap = await host.send("space.join", space_id=room.sid)
    assert snap["role"] == "host"
    assert listener.events("host.away", since=mark) == []


async def alive_all(*clients: Any) -> None:
    for client in clients:
        await client.send("ping")
