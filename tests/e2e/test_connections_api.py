"""The @connections management API through boto3, as the app calls it, against real sockets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from conftest import Client, Clients, await_until, connection_record, management_client, recording

from devstack.gateway import new_connection_id
from sohbet_client import ConnectionClosed

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["root", "stage"])
def client(request, stack):
    """Both the bare endpoint and the /{stage} one that production's endpoint URL carries."""
    suffix = "" if request.param == "root" else "/" + stack.options.stage
    return management_client(stack.base_url + suffix)


async def posted_to(clients: Clients) -> Client:
    """A socket that gets the test's own payloads through @connections: not protocol messages."""
    return await clients.open(check=False)


async def test_post_to_connection_arrives_on_the_socket(clients: Clients, client) -> None:
    ws = await posted_to(clients)
    conn_id = await ws.connection_id()
    payload = {"type": "event", "event": "test.hello", "n": 1}
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=json.dumps(payload))
    assert await ws.recv() == payload
    # the socket still takes commands afterwards
    await ws.ping_raw("after-post")


async def test_get_connection_describes_the_socket(clients: Clients, client) -> None:
    before = datetime.now(tz=UTC)
    ws = await clients.open()
    conn_id = await ws.connection_id()
    first = await asyncio.to_thread(client.get_connection, ConnectionId=conn_id)
    await asyncio.sleep(0.05)
    await ws.ping_raw("activity")
    second = await asyncio.to_thread(client.get_connection, ConnectionId=conn_id)
    await ws.close()
    after = datetime.now(tz=UTC)

    for info in (first, second):
        assert info["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert before.timestamp() - 1 <= info["ConnectedAt"].timestamp() <= after.timestamp()
        assert info["LastActiveAt"] >= info["ConnectedAt"]
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert "websockets" in info["Identity"]["UserAgent"]
    assert second["ConnectedAt"] == first["ConnectedAt"]
    assert second["LastActiveAt"] > first["LastActiveAt"]


async def test_delete_connection_closes_the_socket_then_disconnect_runs(
    stack, clients: Clients, client
) -> None:
    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        ws = await clients.open()
        conn_id = await ws.connection_id()
        response = await asyncio.to_thread(client.delete_connection, ConnectionId=conn_id)
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.code != 1006  # the server sent a close frame
        assert await await_until(lambda: disconnects.for_connection(conn_id))
    assert await await_until(lambda: connection_record(stack, conn_id) is None)
    assert conn_id not in stack.gateway.connections

    # gone: every management call answers 410
    gone = client.exceptions.GoneException
    with pytest.raises(gone):
        client.post_to_connection(ConnectionId=conn_id, Data=b"late")
    with pytest.raises(gone):
        client.get_connection(ConnectionId=conn_id)
    with pytest.raises(gone):
        client.delete_connection(ConnectionId=conn_id)


def test_unknown_connection_ids_are_gone(stack, client) -> None:
    unknown = new_connection_id()
    gone = client.exceptions.GoneException
    with pytest.raises(gone) as raised:
        client.post_to_connection(ConnectionId=unknown, Data=b"{}")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    with pytest.raises(gone):
        client.get_connection(ConnectionId=unknown)
    with pytest.raises(gone):
        client.delete_connection(ConnectionId=unknown)


async def test_a_client_closed_connection_is_gone(stack, clients: Clients, client) -> None:
    ws = await clients.open()
    conn_id = await ws.connection_id()
    await ws.close()
    assert await await_until(lambda: conn_id not in stack.gateway.connections)
    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=conn_id, Data=b"{}")


async def test_posting_over_128_kb_is_refused_and_128_kb_goes_through(clients: Clients, client) -> None:
    ws = await posted_to(clients)
    conn_id = await ws.connection_id()
    too_big = b"x" * (128 * 1024 + 1)
    with pytest.raises(client.exceptions.PayloadTooLargeException) as raised:
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=too_big)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    # the connection is unharmed and the largest allowed message goes through
    largest = "y" * (128 * 1024)
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=largest.encode())
    assert await ws.recv() == largest
    await ws.ping_raw("after-limit")


async def test_posts_from_many_threads_all_arrive_in_one_piece(clients: Clients, client) -> None:
    """Concurrent posts to one socket are serialised: no interleaved or lost frames."""
    count = 50
    ws = await posted_to(clients)
    conn_id = await ws.connection_id()

    def post(i: int) -> None:
        client.post_to_connection(ConnectionId=conn_id, Data=json.dumps({"i": i, "pad": "z" * 2000}))

    await asyncio.gather(*(asyncio.to_thread(post, i) for i in range(count)))
    seen = sorted([(await ws.recv())["i"] for _ in range(count)])
    assert seen == list(range(count))
