"""Two moderators acting at the same moment can never break a limit (conditional writes on the stage)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from conftest import (
    Client,
    Clients,
    Room,
    create_space,
    get_space,
    refused,
    roles,
    uid,
)

from chalicelib.rules import MAX_COHOSTS, MAX_STAGE
from sohbet_client import SohbetError

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

ROUNDS = 4


async def settle(results: list[Any]) -> tuple[list[Any], list[SohbetError]]:
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, SohbetError)]
    unexpected = [r for r in results if not isinstance(r, dict | SohbetError)]
    assert not unexpected, unexpected
    return wins, losses


async def stage_of(clients: Clients, sid: str) -> dict[str, str]:
    return roles(await asyncio.to_thread(get_space, clients.stack, sid))


async def full_stage_but_one(clients: Clients) -> tuple[str, Client, list[Client], Client]:
    """Host, two co-hosts and nine speakers: 12 of 13 seats taken. Returns (sid, host, cohosts, watcher)."""
    room = await Room.open(clients)
    cohosts = [await room.cohost() for _ in range(MAX_COHOSTS)]
    for _ in range(MAX_STAGE - 2 - MAX_COHOSTS):
        await room.speaker()
    watcher = await room.listener("w")
    assert len(await stage_of(clients, room.sid)) == MAX_STAGE - 1
    return room.sid, room.host, cohosts, watcher


async def test_two_moderators_giving_away_the_last_seat_at_once(stack, clients: Clients) -> None:
    sid, host, (first, second), watcher = await full_stage_but_one(clients)
    a, _ = await clients.join(uid("a"), sid)
    b, _ = await clients.join(uid("b"), sid)
    for rounds in range(ROUNDS):
        for asker in (a, b):
            await asker.send("hand.raise", space_id=sid)
        results = await asyncio.gather(
            first.send("request.approve", space_id=sid, user_id=a.user),
            second.send("request.approve", space_id=sid, user_id=b.user),
            return_exceptions=True,
        )
        wins, losses = await settle(results)
        assert len(wins) == 1 and len(losses) == 1, (rounds, results)
        assert losses[0].code == "limit_reached", losses[0]
        stage = await stage_of(clients, sid)
        assert len(stage) == MAX_STAGE
        winner, loser = (a, b) if a.user in stage else (b, a)
        assert loser.user not in stage
        await refused(host.send("request.approve", space_id=sid, user_id=loser.user), "limit_reached")
        await host.send("speaker.remove", space_id=sid, user_id=winner.user)

    # An accepted invitation against an approval, for the same last seat.
    invited, asker, cohost = a, b, second
    with contextlib.suppress(SohbetError):  # the last round's loser still has a hand up
        await invited.send("hand.lower", space_id=sid)
    for rounds in range(ROUNDS // 2):
        await host.send("speaker.invite", space_id=sid, user_id=invited.user)
        await asker.send("hand.raise", space_id=sid)
        results = await asyncio.gather(
            invited.send("invite.accept", space_id=sid),
            cohost.send("request.approve", space_id=sid, user_id=asker.user),
            return_exceptions=True,
        )
        wins, losses = await settle(results)
        assert len(wins) == 1 and [e.code for e in losses] == ["limit_reached"], (rounds, results)
        stage = await stage_of(clients, sid)
        assert len(stage) == MAX_STAGE
        winner = invited if invited.user in stage else asker
        await winner.send("stage.leave", space_id=sid)
        if winner is asker:
            await invited.send("invite.decline", space_id=sid)
        else:
            await asker.send("hand.lower", space_id=sid)

    # The other ways onto a full stage are refused as well.
    await a.send("hand.raise", space_id=sid)
    await host.send("request.approve", space_id=sid, user_id=a.user)
    await refused(host.send("speaker.invite", space_id=sid, user_id=b.user), "limit_reached")
    await refused(host.send("cohost.add", space_id=sid, user_id=b.user), "limit_reached")
    await b.send("hand.raise", space_id=sid)
    await refused(first.send("request.approve", space_id=sid, user_id=b.user), "limit_reached")
    assert len(await stage_of(clients, sid)) == MAX_STAGE
    sizes = [len(e["stage"]) for e in watcher.events("stage.changed")]
    assert sizes and max(sizes) == MAX_STAGE


async def test_two_cohost_adds_at_once_for_the_last_cohost_seat(stack, clients: Clients) -> None:
    host_id = uid("host")
    sid = (await asyncio.to_thread(create_space, stack, host_id))["id"]
    host, _ = await clients.join(host_id, sid)
    first, _ = await clients.join(uid("c"), sid)
    await host.send("cohost.add", space_id=sid, user_id=first.user)
    x, _ = await clients.join(uid("x"), sid)
    y, _ = await clients.join(uid("y"), sid)
    await host.send("speaker.invite", space_id=sid, user_id=y.user)
    await y.send("invite.accept", space_id=sid)  # one a listener, one a speaker
    for rounds in range(ROUNDS):
        results = await asyncio.gather(
            host.send("cohost.add", space_id=sid, user_id=x.user),
            host.send("cohost.add", space_id=sid, user_id=y.user),
            return_exceptions=True,
        )
        wins, losses = await settle(results)
        assert len(wins) == 1 and [e.code for e in losses] == ["limit_reached"], (rounds, results)
        stage = await stage_of(clients, sid)
        cohosts = [u for u, r in stage.items() if r == "cohost"]
        assert len(cohosts) == MAX_COHOSTS and first.user in cohosts
        winner = x if x.user in cohosts else y
        await host.send("cohost.remove", space_id=sid, user_id=winner.user)  # back to speaker
        if winner is x:
            await x.send("stage.leave", space_id=sid)
    assert len([r for r in (await stage_of(clients, sid)).values() if r == "cohost"]) == 1


# -- transactional reads that meet a concurrent write --------------------------------


@contextlib.contextmanager
def read_conflicts(space_id: str, times: int | None) -> Any:
    """The app's TransactGetItems on this space cancelled with TransactionConflict, as DynamoDB
    cancels one that meets a TransactWriteItems in progress on one of its items (a join storm
    writes the counter shards all the time); `times` reads, or every read (None).
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling"""
    from botocore.awsrequest import AWSResponse

    from chalicelib.db import dynamo

    left = {"n": times}
    seen: list[int] = []

    def cancel(params: dict[str, Any], **_: Any) -> Any:
        # before-call sees the serialized request: the JSON body botocore is about to send
        request = json.loads(params.get("body") or b"{}")
        keys = [item["Get"]["Key"] for item in request.get("TransactItems", [])]
        if not any(key.get("space_id", {}).get("S") == space_id for key in keys):
            return None
        if left["n"] is not None:
            if left["n"] <= 0:
                return None
            left["n"] -= 1
        seen.append(len(keys))
        reasons = [{"Code": "None"}] * (len(keys) - 1) + [
            {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
        ]
        body = {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
            },
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb", 400, {}, None), body

    events = dynamo().client.meta.events
    events.register("before-call.dynamodb.TransactGetItems", cancel, unique_id="test-read-conflicts")
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb.TransactGetItems", unique_id="test-read-conflicts")


async def test_a_join_whose_transactional_read_meets_a_write_tries_again(
    stack: Any, clients: Clients
) -> None:
    room = await Room.open(clients)
    late = await clients.open(uid("late"))
    with read_conflicts(room.sid, times=2) as cancelled:
        snapshot = await late.send("space.join", space_id=room.sid)
    assert len(cancelled) == 2
    assert snapshot["role"] == "listener"


async def test_a_read_that_keeps_meeting_writes_answers_conflict_not_internal(
    stack: Any, clients: Clients
) -> None:
    room = await Room.open(clients)
    late = await clients.open(uid("late"))
    with read_conflicts(room.sid, times=None) as cancelled:
        await refused(late.send("space.join", space_id=room.sid), "conflict")
    assert len(cancelled) >= 3
    await late.send("space.join", space_id=room.sid)  # the storm passed
