"""Chime ends meetings on its own; a live space opens its next meeting and carries on.

Chime ends a meeting after 5 minutes with no audio connection, 30 minutes with fewer than two,
or 24 hours (https://docs.aws.amazon.com/chime-sdk/latest/dg/create-mtgs.html), and says so with a
"Chime Meeting State Change" event (chime:MeetingEnded) on EventBridge. The stack's Chime emulator
ends meetings by the same rules on its clock (advanced here instead of waiting) and delivers the
event to the app's rule (app.py on_chime_event). Before: the space stayed live with a dead
meeting and every join answered `internal`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Clients, create_space, local_media, stored_space, uid, until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


@contextlib.contextmanager
def clock_ahead(registry: Any) -> Iterator[Any]:
    """The media registry's clock, `ahead.seconds` in front of real time (the auto-end rules read it)."""

    class Ahead:
        seconds = 0.0

        def __call__(self) -> float:
            return time.time() + self.seconds

    ahead = Ahead()
    saved, registry.clock = registry.clock, ahead
    try:
        yield ahead
    finally:
        registry.clock = saved


async def test_a_meeting_chime_ended_is_renewed_and_everyone_rejoins_it(stack: Any, clients: Clients) -> None:
    registry = local_media()
    host_id = uid("host")
    sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
    host, host_snap = await clients.join(host_id, sid)
    listener, _ = await clients.join(uid("l"), sid)
    old = host_snap["media"]["Meeting"]["MeetingId"]
    marks = {c.user: c.mark for c in (host, listener)}

    with clock_ahead(registry) as ahead:
        ahead.seconds = registry.no_audio_timeout + 1  # nobody connected audio for 5 minutes
        ended = await asyncio.to_thread(registry.tick)
    assert old in {m.meeting_id for m in ended}
    assert stack.media_events.of_type("chime:MeetingEnded", old)

    for client in (host, listener):
        event = await client.event("media.renewed", since=marks[client.user])
        assert event["generation"] == 2
    record = await asyncio.to_thread(stored_space, sid)
    assert record.state == "live" and record.meeting_generation == 2 and record.meeting_id != old
    assert registry.meeting_exists(record.meeting_id)
    assert registry.get_meeting(record.meeting_id).external_meeting_id == f"{sid}-g2"

    again = await host.send("space.join", space_id=sid)
    assert again["role"] == "host"
    assert again["media"]["Meeting"]["MeetingId"] == record.meeting_id
    assert registry.attendee_by_token(again["media"]["Attendee"]["JoinToken"]).audio == "SendReceive"
    heard = await listener.send("space.join", space_id=sid)
    assert heard["role"] == "listener"
    assert registry.attendee_by_token(heard["media"]["Attendee"]["JoinToken"]).meeting_id == record.meeting_id


async def test_a_join_that_finds_the_meeting_gone_renews_it(stack: Any, clients: Clients) -> None:
    """The event can be late or lost (or arrive in another Region's EventBridge, docs/media.md):
    a join that meets NotFound renews the meeting itself instead of answering `internal`."""
    registry = local_media()
    host_id = uid("host")
    sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
    host, host_snap = await clients.join(host_id, sid)
    old = host_snap["media"]["Meeting"]["MeetingId"]
    sink, registry.event_sink = registry.event_sink, None  # the event never arrives
    try:
        registry.delete_meeting(old)
    finally:
        registry.event_sink = sink
    mark = host.mark
    again = await host.send("space.join", space_id=sid)
    assert again["role"] == "host"
    new = again["media"]["Meeting"]["MeetingId"]
    assert new != old and registry.meeting_exists(new)
    await host.event("media.renewed", since=mark)
    assert (await asyncio.to_thread(stored_space, sid)).meeting_id == new


async def test_the_end_of_a_space_deletes_its_primary_only_and_renews_nothing(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """DeleteMeeting of the primary ends its replicas too (one call, not one per replica), and the
    chime:MeetingEnded events our own delete causes do not bring the ended space back."""
    from conftest import chime

    settings(MEETING_MAX_ATTENDEES="14")  # one listener seat in the primary: the next opens a replica
    registry = local_media()
    host_id = uid("host")
    sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
    host, host_snap = await clients.join(host_id, sid)
    primary = host_snap["media"]["Meeting"]["MeetingId"]
    await clients.join(uid("l"), sid)
    _, far = await clients.join(uid("far"), sid)
    replica = far["media"]["Meeting"]["MeetingId"]
    assert replica != primary
    chime().calls.clear()
    await host.send("space.end", space_id=sid)
    await until(lambda: stack.media_events.of_type("chime:MeetingEnded", replica), what="the replica ended")
    # (the stack is shared: the sweep may end an earlier test's space meanwhile)
    ours = {primary, replica}
    deleted = [p["MeetingId"] for op, p in chime().calls if op == "DeleteMeeting" and p["MeetingId"] in ours]
    assert deleted == [primary]
    assert not registry.meeting_exists(primary) and not registry.meeting_exists(replica)
    await asyncio.sleep(0.3)  # the events' handler ran (executor) and changed nothing
    record = await asyncio.to_thread(stored_space, sid)
    assert record.state == "ended" and record.meeting_id == primary and not record.meeting_generation
