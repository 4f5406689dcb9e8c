"""The broadcast tier end to end: room events published once to the space's channel on the
stack's AppSync Events emulator, received by sohbet_client over the realtime protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Clients, Room, refused, until

from sohbet_client import BroadcastError, BroadcastLink

pytestmark = pytest.mark.usefixtures("no_scan")


@pytest.fixture
def tier(stack: Any, settings: Callable[..., None]) -> Iterator[Any]:
    """The app publishes room events to the stack's Event API, every space (threshold 0)."""
    settings(**stack.broadcast_env(), BROADCAST_THRESHOLD="0")
    yield stack.events


async def subscribed(*people: Any, space_id: str) -> None:
    for person in people:
        await person.broadcast_ready(space_id)


async def test_a_stage_change_is_one_publish_that_every_listener_receives(
    stack: Any, clients: Clients, tier: Any
) -> None:
    room = await Room.open(clients, title="big room")
    listeners = await room.listeners(12)
    await subscribed(room.host, *listeners, space_id=room.sid)
    speaker = listeners[0]
    # Let the count events of the joins go out first: they are publishes too.
    await asyncio.sleep(0.8)
    since, posted = len(tier.log), stack.gateway.posted
    marks = {c.user: c.mark for c in [room.host, *listeners]}
    via_tier = {c.user: c.broadcast.received for c in listeners if c.broadcast is not None}

    began = time.monotonic()
    await room.host.send("speaker.invite", space_id=room.sid, user_id=speaker.user)
    await speaker.send("invite.accept", space_id=room.sid)
    members = [room.host, *listeners]
    changed = [await c.event("stage.changed", since=marks[c.user], user_id=speaker.user) for c in members]
    latency = time.monotonic() - began

    assert {e["seq"] for e in changed} == {changed[0]["seq"]}  # one event, one number
    stage_publishes = [
        p for p in tier.publishes(f"/spaces/{room.sid}", since) if p[0]["event"] == "stage.changed"
    ]
    assert stage_publishes == [[changed[0]]]  # one publish for 13 members, the event as they got it
    # Every listener got it through the tier; API Gateway carried the replies and the private
    # events of the invitation (a handful), not one post per member.
    assert all(c.broadcast is not None and c.broadcast.received > via_tier[c.user] for c in listeners)
    assert stack.gateway.posted - posted < 6 < len(members)
    print(f"\nstage change to 13 members via the tier: {latency * 1000:.0f} ms (invite, accept, delivery)")


async def test_a_missed_event_shows_as_a_gap_and_the_client_syncs(
    stack: Any, clients: Clients, tier: Any
) -> None:
    room = await Room.open(clients)
    late = await room.listener()
    await subscribed(late, space_id=room.sid)
    channel = late.broadcast_channels[room.sid]
    assert late.broadcast is not None
    # The listener's subscription lapses (a lost socket would do the same) while the room changes.
    assert await late.broadcast.unsubscribe(channel)
    since = len(tier.log)
    await room.host.send("settings.update", space_id=room.sid, title="while away")
    # The event is published after the reply: resubscribe only once it is out.
    await until(lambda: tier.publishes(channel, since), what="the publish of the missed event")
    await late.broadcast.subscribe(channel)
    await room.host.send("settings.update", space_id=room.sid, title="back again")

    await until(lambda: late.resyncs, timeout=15, what="a space.sync after the gap")
    (gap,) = late.gaps  # the title change missed (and any count event of the joins)
    assert gap.space_id == room.sid and gap.got > gap.expected
    space_id, snapshot = late.resyncs[0]
    # The snapshot has the change the listener missed (and maybe the next one already).
    assert space_id == room.sid and snapshot["space"]["title"] in ("while away", "back again")


async def test_only_a_present_member_may_subscribe(stack: Any, clients: Clients, tier: Any) -> None:
    room = await Room.open(clients)
    listener = await room.listener()
    await subscribed(listener, space_id=room.sid)
    channel = listener.broadcast_channels[room.sid]

    # Someone who never joined, on a link of their own: refused by the Lambda authorizer.
    outsider = await clients.open("outsider")
    await outsider.send("ping")

    link = BroadcastLink(
        stack.broadcast_env()["BROADCAST_REALTIME_URL"],
        f"127.0.0.1:{stack.port}",
        stack.mint_token("outsider"),
        lambda frame: None,
    )
    try:
        with pytest.raises(BroadcastError) as refusal:
            await link.subscribe(channel)
        assert refusal.value.error_type == "UnauthorizedException"
    finally:
        await link.close()

    # A removed member is told over API Gateway, leaves the channel, and cannot subscribe again.
    await room.host.send("participant.remove", space_id=room.sid, user_id=listener.user)
    await listener.event("participant.removed")
    assert room.sid not in listener.broadcast_channels
    assert listener.broadcast is not None
    await until(lambda: channel not in listener.broadcast.channels, what="the unsubscribe")
    with pytest.raises(BroadcastError):
        await listener.broadcast.subscribe(channel)
    await refused(listener.send("space.join", space_id=room.sid), "not_allowed")


async def test_spaces_move_to_the_tier_at_the_threshold(
    stack: Any, clients: Clients, settings: Callable[..., None]
) -> None:
    settings(**stack.broadcast_env(), BROADCAST_THRESHOLD="3")
    tier = stack.events
    room = await Room.open(clients)
    first = await room.listeners(2)
    await subscribed(*first, space_id=room.sid)
    channel, since, mark = f"/spaces/{room.sid}", len(tier.log), first[0].mark
    await room.host.send("settings.update", space_id=room.sid, title="small room")
    await first[0].event("settings.changed", since=mark)
    assert tier.publishes(channel, since) == []  # 2 listeners: posted through API Gateway

    await room.listener()  # the third: the next count event moves the space for good
    await until(lambda: first[0].events("listeners.count", listener_count=3), what="the count of 3")
    since, mark = len(tier.log), first[0].mark
    await room.host.send("settings.update", space_id=room.sid, title="big room now")
    changed = await first[0].event("settings.changed", since=mark)
    assert [changed] in tier.publishes(channel, since)


async def test_a_failed_publish_falls_back_to_api_gateway(
    stack: Any, clients: Clients, settings: Callable[..., None]
) -> None:
    # The publish endpoint answers 404: the event reaches the members through API Gateway.
    settings(**stack.broadcast_env(), BROADCAST_THRESHOLD="0")
    room = await Room.open(clients)
    listener = await room.listener()
    await subscribed(listener, space_id=room.sid)
    settings(BROADCAST_HTTP_URL=f"{stack.base_url}/no-event-api-here")
    since, mark = len(stack.events.log), listener.mark
    await room.host.send("settings.update", space_id=room.sid, title="still delivered")
    changed = await listener.event("settings.changed", since=mark)
    assert changed["settings"]["title"] == "still delivered" and "seq" in changed
    assert stack.events.publishes(f"/spaces/{room.sid}", since) == []


async def test_a_lost_realtime_socket_is_reopened_and_resubscribed(
    stack: Any, clients: Clients, tier: Any
) -> None:
    room = await Room.open(clients)
    listener = await room.listener()
    await listener.broadcast_ready(room.sid)
    link = listener.broadcast
    assert link is not None and link.connections == 1
    link.abort()  # the network drops the realtime socket
    await until(lambda: link.connections == 2 and link.channels, what="a new socket and subscription")
    mark = listener.mark
    await room.host.send("settings.update", space_id=room.sid, title="after the drop")
    changed = await listener.event("settings.changed", since=mark)
    assert changed["settings"]["title"] == "after the drop"


async def test_reactions_are_one_publish_per_interval_and_api_gateway_carries_only_the_acks(
    stack: Any, clients: Clients, tier: Any
) -> None:
    room = await Room.open(clients)
    fans = await room.listeners(8)
    await subscribed(room.host, *fans, space_id=room.sid)
    await asyncio.sleep(0.8)  # the joins' count events go out first
    since, posted = len(tier.log), stack.gateway.posted
    started = time.monotonic()
    sent = ["🔥", "👏"] * 8
    await asyncio.gather(
        *(fans[i % 8].send("reaction.send", space_id=room.sid, emoji=e) for i, e in enumerate(sent))
    )

    def totals(client: Any) -> int:
        return sum(e["total"] for e in client.events("reactions"))

    await until(lambda: all(totals(c) == len(sent) for c in [room.host, *fans]), 20, "every reaction")
    took = time.monotonic() - started
    publishes = [p for p in tier.publishes(f"/spaces/{room.sid}", since) if p[0]["event"] == "reactions"]
    assert 1 <= len(publishes) <= int(took) + 1  # one publish per flush, not per reaction
    assert sum(p[0]["total"] for p in publishes) == len(sent)
    # API Gateway: the 16 acks (and at most a stray count event's private posts), never a post per member
    assert stack.gateway.posted - posted < len(sent) + 4
