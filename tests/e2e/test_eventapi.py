"""The stack's AppSync Events emulator speaks the Event API's protocols: the realtime WebSocket
(`aws-appsync-event-ws`, header subprotocol, connection_init/ack, ka, subscribe/unsubscribe
with authorization, data, errors) and the SigV4-signed HTTP publish. The authorizer it asks
is the app's own Lambda authorizer, so membership decides who may subscribe."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import Clients, Room
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from sohbet_client.broadcast import PROTOCOL, header_subprotocol

pytestmark = pytest.mark.usefixtures("no_scan")


def realtime(stack: Any) -> str:
    return f"ws://127.0.0.1:{stack.port}/event/realtime"


def host(stack: Any) -> str:
    return f"127.0.0.1:{stack.port}"


async def opened(stack: Any, user: str, token: str | None = None) -> ClientConnection:
    auth = header_subprotocol(host(stack), token or stack.mint_token(user))
    return await connect(realtime(stack), subprotocols=[Subprotocol(PROTOCOL), Subprotocol(auth)])


async def answer(ws: ClientConnection, frame: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send a frame (if any) and read the next one that is not a keep-alive."""
    if frame is not None:
        await ws.send(json.dumps(frame))
    while True:
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if got.get("type") != "ka":
            return dict(got)


@pytest.fixture
async def member(stack: Any, clients: Clients) -> AsyncIterator[tuple[Room, Any]]:
    room = await Room.open(clients)
    yield room, await room.listener()


def subscribe(ident: str, channel: str, token: str, stack: Any) -> dict[str, Any]:
    return {
        "type": "subscribe",
        "id": ident,
        "channel": channel,
        "authorization": {"host": host(stack), "Authorization": token},
    }


def publish_http(stack: Any, body: Any, secret: str = "testing", raw: bytes | None = None) -> tuple[int, Any]:
    """POST /event signed as the app signs it (SigV4, service appsync), or with another secret."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{stack.base_url}/event"
    data = raw if raw is not None else json.dumps(body).encode()
    request = AWSRequest(method="POST", url=url, data=data, headers={"content-type": "application/json"})
    SigV4Auth(Credentials("testing", secret), "appsync", "us-east-1").add_auth(request)
    req = urllib.request.Request(url, data=data, method="POST", headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_handshake_ack_and_keepalive(stack: Any) -> None:
    stack.events.settings.ka_seconds = 0.2
    try:
        ws = await opened(stack, "ada")
        assert ws.subprotocol == PROTOCOL
        ack = await answer(ws, {"type": "connection_init"})
        assert ack == {"type": "connection_ack", "connectionTimeoutMs": 300000}
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ka"}
        unknown = await answer(ws, {"type": "start"})
        assert unknown["type"] == "error" and unknown["errors"][0]["errorType"] == "BadRequestException"
        await ws.close()
    finally:
        stack.events.settings.ka_seconds = 60.0


async def test_a_connection_without_the_protocol_or_a_valid_token_is_refused(stack: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(realtime(stack))
    assert refused.value.response.status_code == 400

    for auth in (header_subprotocol(host(stack), "not-a-jwt"), "header-%%%", None):
        protocols = [Subprotocol(PROTOCOL)] + ([Subprotocol(auth)] if auth else [])
        ws = await connect(realtime(stack), subprotocols=protocols)
        error = await answer(ws)
        assert error["type"] == "connection_error"
        assert error["errors"][0]["errorType"] == "UnauthorizedException"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1008


async def test_subscribe_is_for_present_members_only(stack: Any, member: tuple[Room, Any]) -> None:
    room, listener = member
    channel = f"/spaces/{room.sid}"
    ws = await opened(stack, listener.user)
    await answer(ws, {"type": "connection_init"})
    mine = stack.mint_token(listener.user)

    ok = await answer(ws, subscribe("a", channel, mine, stack))
    assert ok == {"type": "subscribe_success", "id": "a"}
    again = await answer(ws, subscribe("a", channel, mine, stack))
    assert again["type"] == "subscribe_error" and again["errors"][0]["errorType"] == "BadRequestException"

    # Another user's token, another space, a wildcard, a bad path, no authorization: refused.
    stranger = stack.mint_token("stranger")
    for ident, frame, error_type in [
        ("b", subscribe("b", channel, stranger, stack), "UnauthorizedException"),
        ("c", subscribe("c", "/spaces/0000000000000000", mine, stack), "UnauthorizedException"),
        ("d", subscribe("d", "/spaces/*", mine, stack), "UnauthorizedException"),
        ("e", subscribe("e", "/nowhere/x", mine, stack), "BadRequestException"),
        ("f", subscribe("f", "spaces//x", mine, stack), "BadRequestException"),
        ("g", {"type": "subscribe", "id": "g", "channel": channel}, "UnauthorizedException"),
        (None, {"type": "subscribe", "channel": channel}, "BadRequestException"),
    ]:
        refused = await answer(ws, frame)
        assert refused["type"] == "subscribe_error" and refused["id"] == ident, refused
        assert refused["errors"][0]["errorType"] == error_type, (frame, refused)

    # A client cannot publish: the authorizer refuses EVENT_PUBLISH.
    publish = {
        "type": "publish",
        "id": "p",
        "channel": channel,
        "events": [json.dumps({"type": "event", "event": "fake"})],
        "authorization": {"host": host(stack), "Authorization": mine},
    }
    refused = await answer(ws, publish)
    assert refused["type"] == "publish_error" and refused["errors"][0]["errorType"] == "UnauthorizedException"

    # Unsubscribe once; a second time there is nothing to end.
    assert await answer(ws, {"type": "unsubscribe", "id": "a"}) == {"type": "unsubscribe_success", "id": "a"}
    missing = await answer(ws, {"type": "unsubscribe", "id": "a"})
    assert missing["type"] == "unsubscribe_error"
    await ws.close()


async def test_http_publish_reaches_subscribers_and_refuses_bad_requests(
    stack: Any, member: tuple[Room, Any]
) -> None:
    room, listener = member
    channel = f"/spaces/{room.sid}"
    ws = await opened(stack, listener.user)
    await answer(ws, {"type": "connection_init"})
    await answer(ws, subscribe("s1", channel, stack.mint_token(listener.user), stack))

    events = [json.dumps({"n": 1}), json.dumps({"n": 2})]
    status, body = publish_http(stack, {"channel": channel, "events": events})
    assert status == 200 and body["failed"] == []
    assert [s["index"] for s in body["successful"]] == [0, 1]
    assert await answer(ws) == {"type": "data", "id": "s1", "event": events[0]}
    assert await answer(ws) == {"type": "data", "id": "s1", "event": events[1]}

    for bad in (
        {"channel": channel, "events": [json.dumps(i) for i in range(6)]},  # more than 5
        {"channel": channel, "events": []},
        {"channel": channel, "events": ["{not json"]},
        {"channel": channel, "events": [{"n": 1}]},  # not a string
        {"channel": "/nowhere/x", "events": events},
        {"channel": "/spaces/" + "x" * 51, "events": events},
        {"channel": "/spaces/a/b/c/d/e", "events": events},  # 6 segments
    ):
        status, body = publish_http(stack, bad)
        assert status == 400 and body["errors"][0]["errorType"] == "BadRequestException", (bad, body)
    status, body = publish_http(stack, None, raw=b"[]")
    assert status == 400
    status, body = publish_http(stack, {"channel": channel, "events": events}, secret="wrong")
    assert status == 401 and body["errors"][0]["errorType"] == "UnauthorizedException"
    req = urllib.request.Request(
        f"{stack.base_url}/event",
        data=json.dumps({"channel": channel, "events": events}).encode(),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(req, timeout=10)
    assert unsigned.value.code == 401
    await ws.close()
