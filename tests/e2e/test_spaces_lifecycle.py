"""A space's life around its people's connections: host grace period, handover, second devices,
and media failures that must leave nothing half-written. HOST_GRACE_SECONDS is 2 in the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    Clients,
    Room,
    alive,
    attendee_of,
    audio,
    chime,
    entry,
    get_space,
    local_media,
    refused,
    roles,
    schedules_paused,
    stored_member,
    uid,
    until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

GRACE = 2.0
ENDS_WITHIN = GRACE + 12.0  # the grace period, the 0.5 s sweep, and a machine at load 15


# The three outcomes of a host's drop run side by side, so that they wait out one grace period.


async def host_does_not_come_back(stack: Any, clients: Clients) -> None:
    """The space ends when the grace period is over, not before."""
    room = await Room.open(clients)
    sid, host, meeting_id = room.sid, room.host, room.meeting_id
    listener, _ = await clients.join(uid("l"), sid)
    dropped_at = time.time()
    await host.close()  # the socket drops; no space.leave

    away = await listener.event("host.away", user_id=host.user)
    assert away["grace_deadline"] == pytest.approx(dropped_at + GRACE, abs=1.0)
    changed = await listener.event("stage.changed", reason="disconnected")
    assert entry(changed, host.user)["present"] is False
    assert (await asyncio.to_thread(get_space, stack, sid))["state"] == "live"  # not yet

    ended = await listener.event("space.ended", timeout=ENDS_WITHIN)
    assert ended["reason"] == "host_left"
    assert time.time() >= away["grace_deadline"] - 0.1  # never before the grace period is over
    space = await asyncio.to_thread(get_space, stack, sid)
    assert space["state"] == "ended" and space["ended_at"]
    # the meeting is deleted after the end is committed and announced
    await until(lambda: not local_media().meeting_exists(meeting_id), what="the meeting deleted")
    await refused(listener.send("hand.raise", space_id=sid), "space_ended")


async def host_comes_back_in_time(stack: Any, clients: Clients) -> None:
    """A host who reconnects within the grace period keeps the space: host.away, then host.back."""
    room = await Room.open(clients)
    sid, host, meeting_id = room.sid, room.host, room.meeting_id
    listener, _ = await clients.join(uid("l"), sid)
    await host.close()
    away = await listener.event("host.away", user_id=host.user)

    again, snapshot = await clients.join(host.user, sid)  # a new connection, a fresh token
    assert snapshot["role"] == "host" and "hands" in snapshot
    assert audio(meeting_id, host.user) == "SendReceive"
    back = await listener.event("host.back", user_id=host.user)
    assert back["seq"] > away["seq"]
    await listener.event("stage.changed", reason="rejoined", user_id=host.user)

    await asyncio.sleep(max(0.0, away["grace_deadline"] - time.time()) + 0.8)  # past the deadline
    space = await asyncio.to_thread(get_space, stack, sid)
    assert space["state"] == "live" and roles(space)[host.user] == "host"
    assert entry(space, host.user)["present"] is True
    assert listener.events("space.ended") == []
    await again.send("settings.update", space_id=sid, title="still mine")


async def cohost_takes_over(stack: Any, clients: Clients) -> None:
    """With handover on, the longest-serving present co-host becomes the host."""
    room = await Room.open(clients, handover=True)
    sid, host = room.sid, room.host
    cohost, _ = await clients.join(uid("c"), sid)
    await room.promote(cohost, "cohost")
    listener, _ = await clients.join(uid("l"), sid)
    await host.close()

    changed = await listener.event("stage.changed", reason="host_handover", timeout=ENDS_WITHIN)
    assert changed["user_id"] == cohost.user
    space = await asyncio.to_thread(get_space, stack, sid)
    assert space["state"] == "live" and roles(space) == {cohost.user: "host"}
    assert (await cohost.send("space.sync", space_id=sid))["role"] == "host"
    await cohost.send("settings.update", space_id=sid, title="new management")  # host-only

    old, snapshot = await clients.join(host.user, sid)  # the old host comes back as a listener
    assert snapshot["role"] == "listener"
    await refused(old.send("space.end", space_id=sid), "not_allowed")
    assert await cohost.send("space.end", space_id=sid) == {"state": "ended"}


async def test_when_the_host_drops_the_space_waits_then_ends_or_passes_to_a_cohost(
    stack, clients: Clients
) -> None:
    await asyncio.gather(
        host_does_not_come_back(stack, clients),
        host_comes_back_in_time(stack, clients),
        cohost_takes_over(stack, clients),
    )


async def test_cohosts_get_their_role_back_and_speakers_give_up_their_seat(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    sid, host = room.sid, room.host
    cohost, _ = await clients.join(uid("c"), sid)
    speaker, _ = await clients.join(uid("s"), sid)
    watcher, _ = await clients.join(uid("w"), sid)
    await room.promote(cohost, "cohost")
    await room.promote(speaker, "speaker")

    await cohost.close()
    changed = await watcher.event("stage.changed", reason="disconnected", user_id=cohost.user)
    assert entry(changed, cohost.user)["present"] is False  # the seat is kept
    again, snapshot = await clients.join(cohost.user, sid)
    assert snapshot["role"] == "cohost" and "hands" in snapshot
    await watcher.event("stage.changed", reason="rejoined", user_id=cohost.user)

    await speaker.close()
    changed = await watcher.event("stage.changed", reason="disconnected", user_id=speaker.user)
    assert entry(changed, speaker.user) is None
    _, snapshot = await clients.join(speaker.user, sid)
    assert snapshot["role"] == "listener"
    space = await asyncio.to_thread(get_space, stack, sid)
    assert roles(space) == {host.user: "host", cohost.user: "cohost"}
    assert space["listener_count"] == 2
    await alive(again)


@pytest.mark.parametrize("role", ["listener", "host"])
async def test_a_second_device_replaces_the_first(stack, clients: Clients, role: str) -> None:
    room = await Room.open(clients)
    sid, host = room.sid, room.host
    watcher, _ = await clients.join(uid("w"), sid)
    first = host if role == "host" else (await clients.join(uid("l"), sid))[0]
    count = (await asyncio.to_thread(get_space, stack, sid))["listener_count"]

    second, snapshot = await clients.join(first.user, sid)
    assert snapshot["role"] == role
    replaced = await first.event("session.replaced")
    assert replaced["space_id"] == sid and "seq" not in replaced
    await until(lambda: first.closed_code is not None, what="the first device's socket to close")
    await alive(second)
    await asyncio.sleep(0.3)  # the old connection's $disconnect must not take the user out
    space = await asyncio.to_thread(get_space, stack, sid)
    assert space["listener_count"] == count
    if role == "host":
        assert entry(space, host.user)["present"] is True
        await second.send("settings.update", space_id=sid, title="from my tablet")
    assert (await second.send("space.sync", space_id=sid))["role"] == role
    assert watcher.events("host.away") == []


async def test_a_failed_media_join_leaves_no_membership(stack, clients: Clients, settings: Any) -> None:
    settings(ATTENDEE_POOL_BATCH="0")  # one CreateAttendee per join, so one can be made to fail
    room = await Room.open(clients)
    sid, meeting_id = room.sid, room.meeting_id
    before = await asyncio.to_thread(get_space, stack, sid)
    attendees = set(local_media().attendees(meeting_id))
    late = await clients.open(uid("late"))
    # BadRequest: botocore does not retry it (a retried 5xx outage would take seconds of backoff)
    chime().fail_next("CreateAttendee", "BadRequest")
    await refused(late.send("space.join", space_id=sid), "internal")
    await alive(late)
    after = await asyncio.to_thread(get_space, stack, sid)
    assert after["listener_count"] == before["listener_count"] == 0
    assert set(local_media().attendees(meeting_id)) == attendees
    await refused(late.send("space.sync", space_id=sid), "not_allowed")  # not a member
    await refused(late.send("hand.raise", space_id=sid), "not_allowed")

    snapshot = await late.send("space.join", space_id=sid)  # the next try works
    assert snapshot["role"] == "listener" and snapshot["listener_count"] == 1
    assert audio(meeting_id, late.user) == "Receive"


async def test_a_failed_capability_change_leaves_the_stage_as_it_was(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    sid, host, meeting_id = room.sid, room.host, room.meeting_id
    asker, _ = await clients.join(uid("asker"), sid)
    speaker, _ = await clients.join(uid("s"), sid)
    await room.promote(speaker, "speaker")
    # the promotion's broadcast reaches the asker before the mark below, not after it
    await until(lambda: any(entry(e, speaker.user) for e in asker.events("stage.changed")))
    await asker.send("hand.raise", space_id=sid)
    before = await asyncio.to_thread(get_space, stack, sid)
    mark = asker.mark

    chime().fail_next("UpdateAttendeeCapabilities", "BadRequest")
    await refused(host.send("request.approve", space_id=sid, user_id=asker.user), "internal")
    after = await asyncio.to_thread(get_space, stack, sid)
    assert after["stage"] == before["stage"] and after["speaker_ids"] == [speaker.user]
    assert after["listener_count"] == before["listener_count"] == 1
    assert audio(meeting_id, asker.user) == "Receive"
    hands = (await host.send("space.sync", space_id=sid))["hands"]
    assert [h["user_id"] for h in hands] == [asker.user]  # the request is still there
    assert (await asker.send("space.sync", space_id=sid))["role"] == "listener"

    with chime().failing("UpdateAttendeeCapabilities", "BadRequest"):
        await refused(host.send("speaker.mute", space_id=sid, user_id=speaker.user), "internal")
        await refused(speaker.send("stage.leave", space_id=sid), "internal")
    after = await asyncio.to_thread(get_space, stack, sid)
    assert after["stage"] == before["stage"] and after["listener_count"] == 1
    assert audio(meeting_id, speaker.user) == "SendReceive"
    assert asker.events("stage.changed", since=mark) == []

    await host.send("request.approve", space_id=sid, user_id=asker.user)  # now it goes through
    assert audio(meeting_id, asker.user) == "SendReceive"
    after = await asyncio.to_thread(get_space, stack, sid)
    assert sorted(after["speaker_ids"]) == sorted([speaker.user, asker.user])
    assert after["listener_count"] == 0


@pytest.fixture
def paused(stack) -> Iterator[None]:
    with schedules_paused(stack):
        yield


async def test_a_sweep_that_read_the_space_before_the_host_came_back_changes_nothing(
    stack, clients: Clients, monkeypatch, paused: None
) -> None:
    """The sweep reads the spaces whose grace ran out, then acts: a host who rejoined in between
    keeps the space, with or without handover (both outcomes are conditional writes)."""
    from chalicelib import spaces
    from chalicelib.models import Space

    opened = [await Room.open(clients), await Room.open(clients, handover=True)]
    plain, handover = [(room.sid, room.host, room.meeting_id) for room in opened]
    cohost, _ = await clients.join(uid("c"), handover[0])
    await opened[1].promote(cohost, "cohost")
    watchers = [(await clients.join(uid("w"), sid))[0] for sid, _, _ in (plain, handover)]
    for (_, host, _), watcher in zip((plain, handover), watchers, strict=True):
        await host.close()
        await watcher.event("host.away", user_id=host.user)
    # What the sweep read just before the hosts came back.
    rooms = (plain, handover)
    stale = [await asyncio.to_thread(Space.get, sid, consistent_read=True) for sid, _, _ in rooms]
    for sid, host, _ in (plain, handover):
        _, snapshot = await clients.join(host.user, sid)
        assert snapshot["role"] == "host"
    later = max(s.grace_deadline for s in stale) + 1
    with monkeypatch.context() as patch:
        patch.setattr(Space.by_grace, "query", lambda *args, **kwargs: iter(stale))
        assert await asyncio.to_thread(spaces.expire_grace, later) == 2

    for (sid, host, _), watcher in zip((plain, handover), watchers, strict=True):
        space = await asyncio.to_thread(get_space, stack, sid)
        assert space["state"] == "live", space
        assert roles(space)[host.user] == "host" and entry(space, host.user)["present"] is True
        assert watcher.events("space.ended") == []
        assert watcher.events("stage.changed", reason="host_handover") == []
    assert roles(await asyncio.to_thread(get_space, stack, handover[0]))[cohost.user] == "cohost"


async def test_a_removed_listener_whose_attendee_chime_would_not_delete_is_cut_off_by_the_retry(
    stack, clients: Clients
) -> None:
    """participant.remove answers at once; the attendee Chime refused to delete (its join token
    still valid) is deleted by the fan-out queue's retry, again on every redelivery while Chime
    keeps refusing, and once it answers."""
    room = await Room.open(clients)
    target = await room.listener("bad")
    seat = attendee_of(room.meeting_id, target.user).attendee_id

    def deletes() -> int:
        return chime().count("DeleteAttendee", AttendeeId=seat)

    with schedules_paused(stack), chime().failing("DeleteAttendee", "BadRequest"):
        await room.host.send("participant.remove", space_id=room.sid, user_id=target.user)
        await target.event("participant.removed", space_id=room.sid)
        member = stored_member(room.sid, target.user)
        assert member.removed and member.attendee_id == seat  # kept on the item until it is gone
        tried = deletes()
        assert tried >= 1
        # the queued retry (5 s later) is refused too: the record comes back to the queue
        await until(lambda: deletes() > tried, timeout=20, what="the queued retry")
        assert seat in local_media().attendees(room.meeting_id)
    await until(
        lambda: seat not in local_media().attendees(room.meeting_id), timeout=20, what="the redelivered retry"
    )
    await until(lambda: stored_member(room.sid, target.user).attendee_id is None, what="the seat forgotten")
    assert stored_member(room.sid, target.user).removed
