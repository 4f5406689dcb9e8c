"""Per-connection and per-user limits, on a stack with the production defaults (docs/limits.md)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from asyncapi_check import validate_server_message
from edges_support import ChildStack
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.e2e

RATE, BURST, HARD, CAP = 10, 20, 50, 10  # chalicelib/config.py defaults


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildStack]:
    child = ChildStack(tmp_path_factory.mktemp("limits"))
    yield child
    child.stop()


async def _ping(ws: Any, ref: str = "p") -> dict[str, Any]:
    await ws.send(json.dumps({"action": "ping", "ref": ref}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("ref") == ref:
            return frame


# -- command rate -------------------------------------------------------------------


def test_a_flooding_socket_is_slowed_then_closed_and_others_are_served(limited: ChildStack) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], int | None, dict[str, Any], float]:
        frames: list[dict[str, Any]] = []
        async with websockets.connect(limited.url_for("flood"), max_queue=None) as ws:
            began = time.monotonic()

            async def flood() -> None:
                # as a flooder does: keep sending until the server hangs up
                for i in range(5000):
                    try:
                        await ws.send(json.dumps({"action": "ping", "ref": f"f{i}"}))
                    except ConnectionClosed:
                        return
                    await asyncio.sleep(0.002)

            sender = asyncio.create_task(flood())
            with pytest.raises(ConnectionClosed):
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            took = time.monotonic() - began
            await sender
            code = ws.close_code
        async with websockets.connect(limited.url_for("quiet")) as other:
            served = await _ping(other)
        return frames, code, served, took

    frames, code, served, took = asyncio.run(scenario())
    replies = [f for f in frames if f["type"] == "reply"]
    limited_frames = [f for f in frames if f.get("code") == "rate_limited"]
    # the burst, plus what refilled while the flood lasted
    assert BURST <= len(replies) <= BURST + RATE * took + 2, (len(replies), took)
    assert limited_frames, frames[-5:]
    slow_down = [f for f in limited_frames if not f.get("data", {}).get("closing")]
    assert slow_down and all(f["data"]["retry_after_ms"] > 0 for f in slow_down)
    closing = [f for f in limited_frames if f.get("data", {}).get("closing")]
    assert closing, "the client is told why before its socket is closed"
    assert frames.index(closing[0]) > frames.index(slow_down[0])
    assert not [f for f in frames if f.get("code") == "internal"]
    for frame in frames:
        validate_server_message(frame)
    assert code == 1000
    assert served["type"] == "reply"


def test_a_client_that_waits_retry_after_ms_is_served_again(limited: ChildStack) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with websockets.connect(limited.url_for("polite")) as ws:
            for i in range(BURST + 5):
                await ws.send(json.dumps({"action": "ping", "ref": f"b{i}"}))
            answers = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(BURST + 5)]
            refused = [a for a in answers if a.get("code") == "rate_limited"]
            assert refused, answers
            last = max(refused, key=lambda a: a["data"]["retry_after_ms"])
            await asyncio.sleep(last["data"]["retry_after_ms"] / 1000 + 0.05)
            return last, await _ping(ws, "again")

    refusal, answer = asyncio.run(scenario())
    assert refusal["message"] == "too many commands; slow down"
    assert answer["type"] == "reply", answer


def test_bad_frames_are_charged_too(limited: ChildStack) -> None:
    """A flood of garbage costs as much as a flood of commands, so it is limited the same way."""

    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(limited.url_for("garbage")) as ws:
            for _ in range(BURST + 5):
                await ws.send("not json")
            return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(BURST + 5)]

    codes = [a["code"] for a in asyncio.run(scenario())]
    assert codes.count("bad_request") >= BURST and "rate_limited" in codes, codes


def test_a_steady_client_within_the_rate_is_never_refused(limited: ChildStack) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with websockets.connect(limited.url_for("steady")) as ws:
            answers = []
            for i in range(BURST + 15):
                answers.append(await _ping(ws, f"s{i}"))
                await asyncio.sleep(1.2 / RATE)
            return answers

    assert all(a["type"] == "reply" for a in asyncio.run(scenario()))


# -- connections per user --------------------------------------------------------------


async def _status(url: str) -> tuple[int, Any]:
    try:
        ws = await websockets.connect(url, open_timeout=10)
    except InvalidStatus as refused:
        return refused.response.status_code, json.loads(refused.response.body)
    return 101, ws


def test_the_connection_past_the_cap_is_refused_with_429_limit_reached(limited: ChildStack) -> None:
    async def scenario() -> None:
        open_ = [await websockets.connect(limited.url_for("capped")) for _ in range(CAP)]
        try:
            status, body = await _status(limited.url_for("capped"))
            assert status == 429, body
            assert body == {"code": "limit_reached", "message": f"at most {CAP} open connections per user"}
            status, other = await _status(limited.url_for("someone-else"))  # per user, not global
            assert status == 101
            await other.close()
            await open_.pop().close()
            deadline = time.monotonic() + 5
            while True:  # the $disconnect frees the seat
                status, ws = await _status(limited.url_for("capped"))
                if status == 101 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert status == 101
            open_.append(ws)
        finally:
            for ws in open_:
                await ws.close()

    asyncio.run(scenario())


def test_racing_connects_never_get_past_the_cap(limited: ChildStack) -> None:
    async def scenario() -> list[int]:
        results = await asyncio.gather(*(_status(limited.url_for("racer")) for _ in range(CAP + 5)))
        for status, ws in results:
            if status == 101:
                await ws.close()
        return sorted(status for status, _ in results)

    statuses = asyncio.run(scenario())
    assert set(statuses) <= {101, 429}
    # never more than the cap; a race may refuse one that would have fit (the client retries)
    assert 1 <= statuses.count(101) <= CAP, statuses


def test_records_of_sockets_already_gone_do_not_count(limited: ChildStack) -> None:
    """A $disconnect that never came must not lock a user out until the sweep."""
    dynamodb = limited.aws_client("dynamodb")
    now = int(time.time())
    for i in range(CAP):
        dynamodb.put_item(
            TableName="sohbet-dev-connections",
            Item={
                "connection_id": {"S": f"ghost{i}AAAAAAAAAA="},
                "user_id": {"S": "haunted"},
                "connected_at": {"N": str(now * 1000 - 60_000 + i)},  # past their $connect
                "last_seen": {"N": str(now)},
                "sweep_shard": {"S": "0"},
                "expires_at": {"N": str(now + 3600)},
            },
        )

    async def scenario() -> int:
        status, ws = await _status(limited.url_for("haunted"))
        if status == 101:
            await ws.close()
        return status

    assert asyncio.run(scenario()) == 101
    left = dynamodb.query(
        TableName="sohbet-dev-connections",
        IndexName="by_user",
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": "haunted"}},
    )["Items"]
    assert not [i for i in left if i["connection_id"]["S"].startswith("ghost")]
