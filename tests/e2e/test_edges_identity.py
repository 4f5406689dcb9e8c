"""Who a socket is, and for how long: connect tickets, token lifetime, suspension (issue 9)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from asyncapi_check import validate_server_message
from conftest import http
from e2e_support import (
    TIMEOUT,
    aws_client,
    connect,
    connection_id,
    connection_record,
    ping,
    recv_json,
    serves_others,
    wait_until,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.e2e


def _ticket(stack: Any, token: str) -> dict[str, Any]:
    status, body = http(stack, "POST", "/ws/ticket", token=token)
    assert status == 201, (status, body)
    return body


async def _refused(url: str) -> Any:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, open_timeout=TIMEOUT):
            pass
    return refused.value.response


# -- tickets ----------------------------------------------------------------------


def test_a_ticket_opens_one_socket_as_its_user_and_is_gone_after(stack) -> None:
    token = stack.mint_token("ada")
    body = _ticket(stack, token)
    assert set(body) == {"ticket", "expires_at", "expires_in"}
    assert 30 <= body["expires_in"] <= 60
    url = f"{stack.ws_url}?ticket={body['ticket']}"

    async def scenario() -> tuple[dict[str, Any], Any]:
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            answer = await ping(ws, "t")
        return answer, await _refused(url)  # the same ticket again

    answer, replay = asyncio.run(scenario())
    assert answer["data"]["user_id"] == "ada"
    assert replay.status_code == 401
    assert json.loads(replay.body) == {"code": "unauthorized", "message": "invalid, expired or used ticket"}


def test_two_sockets_racing_for_one_ticket_get_one_connection(stack) -> None:
    url = f"{stack.ws_url}?ticket={_ticket(stack, stack.mint_token('ada'))['ticket']}"

    async def attempt() -> int:
        try:
            async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                await ping(ws)
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    async def scenario() -> list[int]:
        return sorted(await asyncio.gather(*(attempt() for _ in range(6))))

    assert asyncio.run(scenario()) == [101] + [401] * 5


@pytest.mark.parametrize(
    "ticket",
    ["", "x", "A" * 43, "A" * 42 + "!", "A" * 200, "../../etc", "%00" * 20],
    ids=["empty", "short", "unknown", "bad-char", "long", "path", "nul"],
)
def test_made_up_tickets_are_refused_with_401(stack, ticket: str) -> None:
    async def scenario() -> Any:
        response = await _refused(f"{stack.ws_url}?ticket={ticket}")
        await serves_others(stack)
        return response

    response = asyncio.run(scenario())
    assert response.status_code == 401
    assert json.loads(response.body)["code"] == "unauthorized"


def test_a_ticket_never_outlives_the_token_that_bought_it(stack) -> None:
    token = stack.idp.mint("ada", ttl_seconds=2)
    body = _ticket(stack, token)
    assert body["expires_in"] <= 2
    time.sleep(2.2)
    response = asyncio.run(_refused(f"{stack.ws_url}?ticket={body['ticket']}"))
    assert response.status_code == 401


def test_the_ticket_table_holds_only_hashes(stack) -> None:
    body = _ticket(stack, stack.mint_token("ada"))
    items = aws_client(stack, "dynamodb").scan(TableName=stack.env["TICKETS_TABLE"])["Items"]
    assert items and all(body["ticket"] not in json.dumps(item) for item in items)


@pytest.mark.parametrize("token", [None, "nope", "a.b.c"])
def test_post_ws_ticket_needs_a_valid_bearer_token(stack, token: str | None) -> None:
    status, body = http(stack, "POST", "/ws/ticket", token=token)
    assert status == 401 and body["code"] == "unauthorized", body


def test_token_query_parameter_still_works(stack) -> None:
    async def scenario() -> dict[str, Any]:
        async with connect(stack, "bob") as ws:
            return await ping(ws)

    assert asyncio.run(scenario())["data"]["user_id"] == "bob"


# -- token lifetime ----------------------------------------------------------------


def test_a_command_after_the_token_expires_is_refused_and_the_socket_closed(stack) -> None:
    token = stack.idp.mint("ada", ttl_seconds=2)

    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with connect(stack, token=token) as ws:
            await ping(ws, "fresh")
            await asyncio.sleep(2.2)
            await ws.send(json.dumps({"action": "ping", "ref": "stale"}))
            answer = await recv_json(ws)
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
            return answer, ws.close_code

    answer, code = asyncio.run(scenario())
    assert answer["type"] == "error" and answer["ref"] == "stale", answer
    assert answer["code"] == "unauthorized"
    assert answer["data"] == {"closing": True}
    validate_server_message(answer)
    assert code == 1000


def test_the_token_expiry_is_stored_on_the_connection(stack) -> None:
    token = stack.idp.mint("ada", ttl_seconds=600)

    async def scenario() -> str:
        async with connect(stack, token=token) as ws:
            cid = await connection_id(ws)
            record = connection_record(stack, cid)
            assert record is not None
            exp = int(record["token_exp"]["N"])
            assert abs(exp - (time.time() + 600)) < 5
            return cid

    asyncio.run(scenario())


def test_the_sweep_closes_an_idle_socket_whose_token_expired(stack) -> None:
    from chalicelib import commands, connections

    token = stack.idp.mint("ada", ttl_seconds=2)

    async def scenario() -> tuple[int | None, bool]:
        async with connect(stack, token=token) as ws:
            cid = await connection_id(ws)
            await asyncio.sleep(2.2)
            # The sweep runs every minute in AWS; a socket is visited when unchecked for
            # five minutes: here, visit every socket now.
            await asyncio.to_thread(connections.sweep_stale, commands.connection_gone, -1)
            with pytest.raises(ConnectionClosed):
                await recv_json(ws)
            gone = wait_until(lambda: connection_record(stack, cid) is None)
            return ws.close_code, bool(gone)

    code, gone = asyncio.run(scenario())
    assert code == 1000 and gone


def test_the_sweep_leaves_live_sockets_with_valid_tokens_alone(stack) -> None:
    from chalicelib import commands, connections

    async def scenario() -> None:
        async with connect(stack, "bob") as ws:
            cid = await connection_id(ws)
            await asyncio.to_thread(connections.sweep_stale, commands.connection_gone, -1)
            await ping(ws, "still-here")
            assert connection_record(stack, cid) is not None

    asyncio.run(scenario())


def test_the_sweep_cuts_off_a_suspended_user_whose_disconnect_was_lost(stack) -> None:
    """Suspension closes sockets at once (admin.suspend_now); the sweep is the backstop."""
    from chalicelib import commands, connections

    dynamodb = aws_client(stack, "dynamodb")

    async def scenario() -> int | None:
        async with connect(stack, "mallory") as ws:
            await connection_id(ws)
            dynamodb.put_item(
                TableName=stack.env["USERS_TABLE"],
                Item={"user_id": {"S": "mallory"}, "suspended_until": {"N": str(int(time.time()) + 600)}},
            )
            try:
                await asyncio.to_thread(connections.sweep_stale, commands.connection_gone, -1)
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)
            finally:
                dynamodb.delete_item(TableName=stack.env["USERS_TABLE"], Key={"user_id": {"S": "mallory"}})
            return ws.close_code

    assert asyncio.run(scenario()) == 1000


def test_a_suspended_user_gets_no_ticket(stack) -> None:
    dynamodb = aws_client(stack, "dynamodb")
    dynamodb.put_item(
        TableName=stack.env["USERS_TABLE"],
        Item={"user_id": {"S": "mallory"}, "suspended_until": {"N": str(int(time.time()) + 600)}},
    )
    try:
        status, body = http(stack, "POST", "/ws/ticket", token=stack.mint_token("mallory"))
    finally:
        dynamodb.delete_item(TableName=stack.env["USERS_TABLE"], Key={"user_id": {"S": "mallory"}})
    assert status == 403 and body["code"] == "not_allowed", body
