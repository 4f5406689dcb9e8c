"""Broadcasts read the members whose socket is open, not every member who ever joined.

Before: a broadcast's recipients were a strongly consistent Query of the whole members partition
with a filter on `present`, so a space where thousands came and went read (and paid for) every
one of them. Now the presence table holds one row per member with a `connection_id`, written in
the transaction that changes it; the broadcast Queries those rows only. These tests check that
the rows follow the members through every path that opens or closes a member's socket, and that
a broadcast in a space most people left reads and reaches only those still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Clients, Room, alive, schedules_paused, stored_member, until

from devstack.stats import QUERY_READS

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


def sockets_of_members(space_id: str) -> dict[str, str]:
    from chalicelib.models import Member

    members = Member.query(space_id, consistent_read=True)
    return {m.user_id: m.connection_id for m in members if m.connection_id}


def presence_rows(space_id: str) -> dict[str, str]:
    from chalicelib.models import Presence

    return {r.user_id: r.connection_id for r in Presence.query(space_id, consistent_read=True)}


async def socket_of(client: Any) -> str:
    return str((await client.send("ping"))["connection_id"])


async def rows_match(space_id: str, what: str) -> dict[str, str]:
    """The presence rows are the members' open sockets (waits for a $disconnect to be handled)."""

    def same() -> bool:
        return presence_rows(space_id) == sockets_of_members(space_id)

    await until(lambda: same(), what=f"presence rows == members' sockets after {what}")
    return presence_rows(space_id)


async def test_presence_rows_follow_every_socket_a_member_gains_or_loses(
    stack: Any, clients: Clients, settings: Any
) -> None:
    settings(RECONNECT_GRACE_SECONDS="60")  # a dropped socket keeps the seat: no row meanwhile
    room = await Room.open(clients)
    sid = room.sid
    leaver, dropper, twice, removed = await room.listeners(4)
    speaker, stage_leaver, stage_removed = [await room.speaker() for _ in range(3)]
    rows = await rows_match(sid, "joins")
    assert set(rows) == {
        c.user for c in (room.host, leaver, dropper, twice, removed, speaker, stage_leaver, stage_removed)
    }
    assert rows[leaver.user] == await socket_of(leaver)

    await leaver.send("space.leave", space_id=sid)
    assert leaver.user not in await rows_match(sid, "a leave")
    await stage_leaver.send("space.leave", space_id=sid)  # off the stage and out, one transaction
    assert stage_leaver.user not in await rows_match(sid, "a speaker's leave")

    for away in (dropper, speaker):  # a listener's and a speaker's socket drop: the grace runs
        away.abort()
        await until(lambda away=away: away.user not in presence_rows(sid), what=f"{away.user} away")
        assert away.user not in await rows_match(sid, "a dropped socket")
    back = await clients.open(dropper.user)
    assert (await back.send("space.join", space_id=sid))["role"] == "listener"
    speaker_back = await clients.open(speaker.user)
    assert (await speaker_back.send("space.join", space_id=sid))["role"] == "speaker"
    rows = await rows_match(sid, "resumes")
    assert rows[dropper.user] == await socket_of(back)
    assert rows[speaker.user] == await socket_of(speaker_back)

    second = await clients.open(twice.user)  # another device takes the seat: session.replaced
    mark = twice.mark
    await second.send("space.join", space_id=sid)
    await twice.event("session.replaced", since=mark)
    assert (await rows_match(sid, "a replacement"))[twice.user] == await socket_of(second)

    for gone in (removed, stage_removed):
        await room.host.send("participant.remove", space_id=sid, user_id=gone.user)
        assert gone.user not in await rows_match(sid, "a removal")

    await speaker_back.send("stage.leave", space_id=sid)  # a stage change that keeps the member
    assert speaker.user in await rows_match(sid, "leaving the stage")

    mark = second.mark
    await room.host.send("space.end", space_id=sid)
    await second.event("space.ended", since=mark)
    await rows_match(sid, "the end")
    await clients.close()  # each $disconnect (handled in the background) takes its row
    await until(lambda: presence_rows(sid) == {} == sockets_of_members(sid), what="every socket closed")


async def test_a_broadcast_reads_and_reaches_only_the_sockets_still_there(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """Twelve listeners came; eight left (their sockets stay open), two dropped theirs, one was
    removed. A stage change then reads two presence rows and reaches exactly two sockets."""
    from chalicelib.config import get_settings

    settings(RECONNECT_GRACE_SECONDS="0")
    room = await Room.open(clients)
    sid = room.sid
    people = await room.listeners(12)
    gone, dropped, (removed, stays) = people[:8], people[8:10], people[10:]
    for client in gone:
        await client.send("space.leave", space_id=sid)
    for client in dropped:
        client.abort()
    await room.host.send("participant.remove", space_id=sid, user_id=removed.user)
    assert set(await rows_match(sid, "leaves")) == {room.host.user, stays.user}
    everyone = [room.host, *gone, removed, stays]
    marks = {c.user: c.mark for c in everyone}
    members_table, presence_table = get_settings().members_table, get_settings().presence_table

    with schedules_paused(stack):  # only the broadcast's reads are counted
        QUERY_READS.reset()
        await room.host.send("mic.unmute", space_id=sid)
        for client in (room.host, stays):
            await client.event("stage.changed", since=marks[client.user], reason="unmuted")
        assert QUERY_READS.of(presence_table) == (1, 2)  # one Query, two items
        assert QUERY_READS.of(members_table) == (0, 0)  # not the 14 member items
    await asyncio.sleep(0.3)  # a stray post would have come by now
    for client in (*gone, removed):
        assert client.events("stage.changed", since=marks[client.user]) == [], client.user
        await alive(client)  # their sockets are open: they just are not in the space


@contextlib.contextmanager
def write_conflict(space_id: str, user_id: str, times: int) -> Iterator[list[str]]:
    """The app's next `times` TransactWriteItems that delete this member's presence row cancelled with
    TransactionConflict on the member item, as DynamoDB cancels a write that meets another
    transaction in progress on one of its items (a stage change writing the member, say).
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling"""
    from botocore.awsrequest import AWSResponse

    from chalicelib.config import get_settings
    from chalicelib.db import dynamo

    presence_table = get_settings().presence_table
    cancelled: list[str] = []

    def cancel(params: dict[str, Any], **_: Any) -> Any:
        items = json.loads(params.get("body") or b"{}").get("TransactItems", [])
        deletes = [i["Delete"] for i in items if "Delete" in i and i["Delete"]["TableName"] == presence_table]
        key = {"space_id": {"S": space_id}, "user_id": {"S": user_id}}
        if len(cancelled) >= times or not any(d["Key"] == key for d in deletes):
            return None
        cancelled.append(user_id)
        reasons = [
            {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
            if "Update" in i
            else {"Code": "None"}
            for i in items
        ]
        body = {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb", 400, {}, None), body

    events = dynamo().client.meta.events
    events.register("before-call.dynamodb.TransactWriteItems", cancel, unique_id="test-presence-conflict")
    try:
        yield cancelled
    finally:
        events.unregister("before-call.dynamodb.TransactWriteItems", unique_id="test-presence-conflict")


async def test_a_dropped_socket_whose_write_meets_another_transaction_tries_again(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """Before the presence row, a dropped socket was one UpdateItem; now it is a transaction, which
    DynamoDB cancels if another one holds the member item. Tried again, the seat is kept for the
    grace and the row goes; given up, the member would keep a dead socket as theirs."""
    settings(RECONNECT_GRACE_SECONDS="60")
    room = await Room.open(clients)
    listener = await room.listener()
    # Twice: a drop tries "audio up" first, then "audio not up" (spaces/presence.py); each is
    # cancelled once and must be tried again.
    with write_conflict(room.sid, listener.user, times=2) as cancelled:
        listener.abort()
        await until(lambda: listener.user not in presence_rows(room.sid), what="the row gone")
    assert cancelled == [listener.user] * 2
    member = await asyncio.to_thread(stored_member, room.sid, listener.user)
    assert member.present and member.connection_id is None and member.away_until is not None
    await rows_match(room.sid, "a retried drop")
