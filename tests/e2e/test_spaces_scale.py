"""Cost at audience size: one shared room of 200 listeners (a module fixture, on the session's event loop).

Listener counts are coalesced over an hour here, and the scheduled sweep is paused, so that
what is counted is what a join or a leave itself costs. Timings are printed (pytest -s), not
asserted: they say how this machine did, not what production does.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asyncapi_check import validate_server_message
from conftest import (
    Client,
    get_space,
    http,
    listener_count_interval,
    schedules_paused,
    token,
    uid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

LISTENERS = 200
SMALL = 10
# The suspension check (GetItem), TransactGetItems, BatchGetItem (blocks), the pool's UpdateItem +
# GetItem (in place of a Chime CreateAttendee: Chime allows ~10/s), TransactWriteItems, the seq
# read again after it (GetItem), the reply; sometimes the count claim.
MAX_JOIN_CALLS = 9


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Room:
    def __init__(self, stack: Any, sid: str, host: Client) -> None:
        self.stack = stack
        self.sid = sid
        self.host = host
        self.listeners: list[Client] = []
        self.others: list[Client] = []
        self.join_seconds: list[float] = []

    @classmethod
    async def build(cls, stack: Any, listeners: int, title: str) -> Room:
        host_id = uid("host")
        status, space = await asyncio.to_thread(
            http, stack, "POST", "/spaces", {"title": title}, token(stack, host_id)
        )
        assert status == 201, space
        host = await connect(stack, host_id)
        await host.send("space.join", space_id=space["id"])
        room = cls(stack, space["id"], host)
        await room.grow(listeners)
        return room

    async def grow(self, count: int) -> None:
        """Join `count` listeners one by one, timing each join; the next ones connect meanwhile."""
        users = [uid("l") for _ in range(count)]
        batches = [users[start : start + 10] for start in range(0, count, 10)]
        connecting = asyncio.create_task(connect_all(self.stack, batches[0]))
        for index in range(len(batches)):
            clients = await connecting
            if index + 1 < len(batches):
                connecting = asyncio.create_task(connect_all(self.stack, batches[index + 1]))
            for client in clients:
                began = time.perf_counter()
                snapshot = await client.send("space.join", space_id=self.sid)
                self.join_seconds.append(time.perf_counter() - began)
                assert snapshot["role"] == "listener"
                self.listeners.append(client)

    async def newcomer(self) -> Client:
        client = await connect(self.stack, uid("new"))
        self.others.append(client)
        return client

    def everyone(self) -> list[Client]:
        return [self.host, *self.listeners, *self.others]

    async def close(self) -> None:
        status, _ = await asyncio.to_thread(
            http, self.stack, "POST", f"/spaces/{self.sid}/end", None, token(self.stack, self.host.user)
        )
        assert status == 200
        clients = self.everyone()
        for start in range(0, len(clients), 8):  # a few at a time, as a crowd drifts off
            await asyncio.gather(*(c.close() for c in clients[start : start + 8]), return_exceptions=True)
        # Wait for the server to process the disconnects, so none is cut off when the stack stops.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                space = await asyncio.to_thread(get_space, self.stack, self.sid)
            except TimeoutError:  # the stack busy with 200 disconnects on a slow machine: ask again
                continue
            if space["listener_count"] == 0:
                break
            await asyncio.sleep(0.5)
        for client in self.everyone():
            assert client.invalid_frames == []
            for frame in client.received:
                validate_server_message(frame)


async def connect_all(stack: Any, users: list[str]) -> list[Client]:
    return list(await asyncio.gather(*(connect(stack, u) for u in users)))


async def connect(stack: Any, user: str) -> Client:
    client = Client(stack.ws_url, token(stack, user), user)
    await client.connect()
    return client


@pytest.fixture(scope="module")
def quiet(stack) -> Iterator[None]:
    """Counts coalesced over an hour and no sweep: nothing runs in the background of a measurement."""
    with listener_count_interval(3600), schedules_paused(stack):
        yield


@pytest.fixture(scope="module")
async def big_room(stack, quiet: None) -> AsyncIterator[Room]:
    room = await asyncio.wait_for(Room.build(stack, LISTENERS, "two hundred"), 600)
    yield room
    await room.close()


def test_two_hundred_listeners_join_one_by_one(stack, big_room: Room) -> None:
    space = get_space(stack, big_room.sid)
    assert space["listener_count"] == LISTENERS
    times = [t * 1000 for t in big_room.join_seconds]
    print(
        f"\n[spaces] join latency over {len(times)} joins: p50 {percentile(times, 50):.1f} ms, "
        f"p99 {percentile(times, 99):.1f} ms, max {max(times):.1f} ms "
        f"(room growing from 0 to {LISTENERS} listeners, the next ten connecting meanwhile)"
    )


async def join_calls(room: Room, aws_calls: Any) -> dict[str, int]:
    """The AWS operations of one more listener's space.join (connect excluded), from send to reply."""
    client = await room.newcomer()
    await asyncio.sleep(0.1)  # the connect's own writes are done
    aws_calls.reset()
    await client.send("space.join", space_id=room.sid)
    await asyncio.sleep(0.15)  # anything the join set off after its reply
    return {op: n for op, n in aws_calls.snapshot().items() if not op.startswith("sqs:")}


async def test_a_listener_join_costs_the_same_at_10_and_at_200_listeners(
    stack, big_room: Room, aws_calls: Any
) -> None:
    small = await Room.build(stack, SMALL, "ten")
    try:
        at_small = min([await join_calls(small, aws_calls) for _ in range(2)], key=lambda c: sum(c.values()))
        at_big = min([await join_calls(big_room, aws_calls) for _ in range(2)], key=lambda c: sum(c.values()))
    finally:
        await small.close()
    print(f"\n[spaces] AWS calls of one listener join: at {SMALL} listeners {at_small}")
    print(f"[spaces] AWS calls of one listener join: at {LISTENERS} listeners {at_big}")
    assert at_small == at_big
    assert sum(at_big.values()) <= MAX_JOIN_CALLS
    assert "dynamodb:Scan" not in at_big and "dynamodb:Query" not in at_big
    assert at_big.get("apigatewaymanagementapi:PostToConnection") == 1  # the reply, nothing else


async def test_a_join_a_leave_and_a_raised_hand_send_a_constant_number_of_messages(
    stack, big_room: Room
) -> None:
    gateway = stack.gateway

    async def posts_of(action: str, client: Client) -> int:
        before = gateway.posted
        await client.send(action, space_id=big_room.sid)
        await asyncio.sleep(0.25)  # events held until after the reply have gone out
        return gateway.posted - before

    present = get_space(stack, big_room.sid)["listener_count"]

    client = await big_room.newcomer()
    counts = {action: await posts_of(action, client) for action in ("space.join", "hand.raise")}
    counts["hand.lower"] = await posts_of("hand.lower", client)
    counts["space.leave"] = await posts_of("space.leave", client)
    print(f"\n[spaces] posts with {LISTENERS} listeners present: {counts}")
    assert counts["space.join"] <= 2 and counts["space.leave"] <= 2
    assert counts["hand.raise"] == 2 and counts["hand.lower"] == 2  # the reply, and the one host
    assert present >= LISTENERS and get_space(stack, big_room.sid)["listener_count"] == present


async def test_a_stage_change_reaches_all_200_listeners(stack, big_room: Room) -> None:
    asker = big_room.listeners[0]
    await asker.send("hand.raise", space_id=big_room.sid)

    def approved(frame: dict[str, Any]) -> bool:
        return frame.get("reason") == "request_approved" and frame.get("user_id") == asker.user

    async def arrival(client: Client) -> float:
        await client.next_event("stage.changed", timeout=30, predicate=approved)
        return time.perf_counter()

    waiting = [asyncio.create_task(arrival(c)) for c in big_room.listeners]
    await asyncio.sleep(0.05)
    sent = time.perf_counter()
    await big_room.host.send("request.approve", space_id=big_room.sid, user_id=asker.user)
    replied = time.perf_counter()
    times = await asyncio.gather(*waiting)
    await big_room.host.send("speaker.remove", space_id=big_room.sid, user_id=asker.user)
    reply, arrivals = replied - sent, [a - sent for a in times]
    assert len(arrivals) == LISTENERS
    print(
        f"\n[spaces] stage.changed to {LISTENERS} listeners: reply after {reply * 1000:.0f} ms, "
        f"median arrival {statistics.median(arrivals) * 1000:.0f} ms, "
        f"last arrival {max(arrivals) * 1000:.0f} ms after request.approve was sent"
    )
