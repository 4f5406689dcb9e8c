"""The WebSocket API end to end: real sockets to the emulator, the app's real handlers behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
from conftest import Clients, await_until, connection_record, recording, replaced
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import InvalidStatus

from devstack.gateway import GatewaySettings, WebSocketGateway
from sohbet_client import ConnectionClosed

pytestmark = pytest.mark.e2e


# -- connect and ping -----------------------------------------------------------


async def test_ping_replies_with_the_verified_caller(clients: Clients) -> None:
    ws = await clients.open("ada")
    answer = await ws.command({"action": "ping", "ref": "p1"})
    assert answer["type"] == "reply"
    assert answer["ref"] == "p1"
    assert answer["ok"] is True
    assert answer["data"]["user_id"] == "ada"
    assert isinstance(answer["data"]["connection_id"], str)


async def test_the_stage_path_is_served_too(clients: Clients) -> None:
    """Clients connect to wss://…/{stage}; the emulator answers on /{stage} as on /."""
    ws = await clients.open("ada", stage=True)
    assert (await ws.ping_raw("staged"))["data"]["user_id"] == "ada"


# -- refused upgrades -------------------------------------------------------------


def _signed(stack, key: Any = None, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "ada",
        "cognito:username": "ada",
        "iss": stack.idp.issuer,
        "aud": stack.idp.audience,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    signing_key = key if key is not None else stack.idp._private_key
    return jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": stack.idp.kid})


def _refusal_tokens(stack) -> dict[str, str | None]:
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "missing": None,
        "empty": "",
        "garbage": "not-a-jwt",
        "expired": _signed(stack, iat=now - 7200, auth_time=now - 7200, exp=now - 3600),
        "other key, same kid": _signed(stack, key=other_key),
        "wrong issuer": _signed(stack, iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_evil"),
        "wrong audience": _signed(stack, aud="some-other-client"),
        "alg none": jwt.encode({"sub": "ada", "iss": stack.idp.issuer}, None, algorithm="none"),
    }


async def test_bad_tokens_are_refused_with_401_and_the_process_keeps_serving(stack, clients: Clients) -> None:
    for name, token in _refusal_tokens(stack).items():
        client = clients.client(token=token, no_token=token is None)
        with pytest.raises(InvalidStatus) as refused:
            await client.connect()
        response = refused.value.response
        assert response.status_code == 401, name
        body = json.loads(response.body)
        assert body["code"] == "unauthorized", name
        assert isinstance(body["message"], str) and body["message"], name
        await clients.serves_others()


async def test_a_refused_connection_never_reaches_disconnect(stack, clients: Clients) -> None:
    """API Gateway calls $disconnect only for connections that were established."""
    handlers = stack.gateway._handlers
    with recording(handlers, "$connect") as connects, recording(handlers, "$disconnect") as disconnects:
        with pytest.raises(InvalidStatus):
            await clients.open(token="nope")
        [refused] = connects.events
        conn_id = refused["requestContext"]["connectionId"]
        await asyncio.sleep(0.3)
        assert disconnects.for_connection(conn_id) == []
    assert conn_id not in stack.gateway.connections


# -- bad input ----------------------------------------------------------------------

BAD_FRAMES: list[tuple[str, Any, str | None]] = [
    ("malformed JSON", '{"action": "ping", "ref": ', None),
    ("empty text", "", None),
    ("missing action", {"ref": "m1"}, "m1"),
    ("unknown action", {"action": "launch.rocket", "ref": "m2"}, "m2"),
    ("action not a string", {"action": 7, "ref": "m3"}, "m3"),
    ("ref not a string", {"action": "ping", "ref": 5}, None),
    ("ref too long", {"action": "ping", "ref": "r" * 65}, None),
    ("extra field", {"action": "ping", "ref": "m4", "user_id": "root"}, "m4"),
    ("JSON array", "[1, 2, 3]", None),
    ("JSON string", '"ping"', None),
    ("JSON number", "42", None),
    ("JSON null", "null", None),
    ("binary frame", b'{"action": "ping", "ref": "m5"}', None),
]


async def test_bad_messages_get_bad_request_frames_and_the_socket_stays_open(clients: Clients) -> None:
    ws = await clients.open()
    for name, frame, ref in BAD_FRAMES:
        answer = await ws.command(frame)
        assert answer["type"] == "error", name
        assert answer["code"] == "bad_request", (name, answer)
        assert answer["ref"] == ref, (name, answer)
        assert isinstance(answer["message"], str) and answer["message"], name
        assert "Traceback" not in answer["message"], name
    answer = await ws.ping_raw("still-here")
    assert answer["data"]["user_id"] == "ada"


async def test_a_message_of_exactly_128_kb_in_32_kb_frames_is_accepted(clients: Clients) -> None:
    """The quota is 128 KB per message, sent in frames of at most 32 KB."""
    envelope = json.dumps({"action": "ping", "ref": "big", "pad": ""})
    message = envelope[:-2] + "x" * (128 * 1024 - len(envelope)) + '"}'
    assert len(message.encode()) == 128 * 1024

    ws = await clients.open()
    await ws.send_raw([message[i : i + 32 * 1024] for i in range(0, len(message), 32 * 1024)])
    answer = await ws.recv()
    # it reached the app: refused for the extra field, not by the gateway
    assert (answer["type"], answer["ref"], answer["code"]) == ("error", "big", "bad_request")
    await ws.ping_raw()


async def test_a_message_over_128_kb_closes_the_socket_with_1009(stack, clients: Clients) -> None:
    message = json.dumps({"action": "ping", "ref": "huge", "pad": "x" * (128 * 1024)})

    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        ws = await clients.open()
        conn_id = await ws.connection_id()
        await ws.send_raw(message)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.code == 1009  # the close frame the server sent
        await ws.close()
        await clients.serves_others()
        assert await await_until(lambda: disconnects.for_connection(conn_id))
    assert disconnects.for_connection(conn_id)[0]["requestContext"]["disconnectStatusCode"] == 1009
    assert await await_until(lambda: connection_record(stack, conn_id) is None)


# -- disconnect clean-up ----------------------------------------------------------


async def test_closing_the_socket_removes_the_connection_record(stack, clients: Clients) -> None:
    ws = await clients.open()
    conn_id = await ws.connection_id()
    record = connection_record(stack, conn_id)
    assert record is not None and record["user_id"] == {"S": "ada"}
    await ws.close()
    assert await await_until(lambda: connection_record(stack, conn_id) is None, timeout=3)


async def test_a_dropped_tcp_connection_is_cleaned_up_too(stack, clients: Clients) -> None:
    """No close frame at all (network loss): $disconnect still runs, with 1006."""
    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        ws = await clients.open()
        conn_id = (await ws.command({"action": "ping", "ref": "r"}))["data"]["connection_id"]
        assert connection_record(stack, conn_id) is not None
        ws.abort()
        assert await await_until(lambda: disconnects.for_connection(conn_id))
    assert disconnects.for_connection(conn_id)[0]["requestContext"]["disconnectStatusCode"] == 1006
    assert await await_until(lambda: connection_record(stack, conn_id) is None)
    assert conn_id not in stack.gateway.connections


# -- limits: idle timeout and maximum duration ------------------------------------


@pytest.fixture
def gateway_settings(stack) -> Iterator[GatewaySettings]:
    """The emulator's limits, to change for one test; put back afterwards."""
    settings = stack.gateway.settings
    saved = dataclasses.replace(settings)
    yield settings
    for field in dataclasses.fields(settings):
        setattr(settings, field.name, getattr(saved, field.name))


async def test_an_idle_connection_is_closed_with_1001(
    stack, clients: Clients, gateway_settings: GatewaySettings
) -> None:
    gateway_settings.idle_timeout_seconds = 1
    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        ws = await clients.open()
        conn_id = await ws.connection_id()  # the last activity
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv(timeout=4)
        elapsed, code = time.monotonic() - started, closed.value.code
        assert await await_until(lambda: disconnects.for_connection(conn_id))
    assert code == 1001
    assert 0.5 <= elapsed <= 2.5
    ctx = disconnects.for_connection(conn_id)[0]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")
    assert await await_until(lambda: connection_record(stack, conn_id) is None)


async def test_activity_defers_the_idle_timeout(clients: Clients, gateway_settings: GatewaySettings) -> None:
    gateway_settings.idle_timeout_seconds = 1
    ws = await clients.open()
    for i in range(6):  # 1.8 s in all, never idle for 1 s
        await asyncio.sleep(0.3)
        await ws.ping_raw(f"keep-{i}")


async def test_a_connection_is_closed_with_1001_at_its_maximum_duration(
    clients: Clients, gateway_settings: GatewaySettings
) -> None:
    gateway_settings.max_connection_seconds = 1.5
    ws = await clients.open()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        for i in range(20):  # busy, never idle: only the duration limit applies
            await ws.ping_raw(f"busy-{i}")
            await asyncio.sleep(0.2)
    elapsed, code = time.monotonic() - started, closed.value.code
    assert code == 1001
    assert 1.0 <= elapsed <= 3.0


# -- integration failures -----------------------------------------------------------


def _broken(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("simulated Lambda failure")


async def test_a_handler_that_raises_gives_api_gateways_error_frame_and_the_socket_stays_open(
    stack, clients: Clients
) -> None:
    ws = await clients.open()
    conn_id = await ws.connection_id()
    with replaced(stack.gateway._handlers, "$default", _broken):
        answer = await ws.command({"action": "ping", "ref": "doomed"})
    assert set(answer) == {"message", "connectionId", "requestId"}
    assert answer["message"] == "Internal server error"
    assert answer["connectionId"] == conn_id
    assert isinstance(answer["requestId"], str) and answer["requestId"]
    await ws.ping_raw("after")


async def test_a_connect_handler_that_raises_refuses_the_upgrade(stack, clients: Clients) -> None:
    with replaced(stack.gateway._handlers, "$connect", _broken), pytest.raises(InvalidStatus) as refused:
        await clients.open()
    assert refused.value.response.status_code >= 500
    await clients.serves_others()


# -- route selection ------------------------------------------------------------------


def _gateway(route_keys: list[str]) -> WebSocketGateway:
    def handler(event: dict[str, Any], context: Any) -> None:
        return None

    return WebSocketGateway(
        dict.fromkeys(route_keys, handler), ThreadPoolExecutor(max_workers=1), lambda: None, GatewaySettings()
    )


@pytest.mark.parametrize(
    "body",
    [
        '{"action": "ping"}',
        '{"action": "chat"}',
        '{"action": "$connect"}',
        '{"action": "$disconnect"}',
        '{"ref": "x"}',
        '{"action": 5}',
        "[]",
        "not json",
        "",
    ],
)
def test_chalice_routes_everything_to_default(stack, body: str) -> None:
    assert stack.gateway.select_route(body) == "$default"


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ('{"action": "chat", "text": "hi"}', "chat"),
        ('{"action": "typing"}', "typing"),
        ('{"action": "ping"}', "$default"),
        ('{"action": "$connect"}', "$default"),
        ('{"action": "$disconnect"}', "$default"),
        ('{"action": ["chat"]}', "$default"),
        ('{"action": null}', "$default"),
        ('["chat"]', "$default"),
        ('"chat"', "$default"),
        ("{broken", "$default"),
    ],
)
def test_custom_route_keys_are_selected_on_the_action_field(body: str, route: str) -> None:
    gateway = _gateway(["$connect", "$disconnect", "$default", "chat", "typing"])
    assert gateway.select_route(body) == route


# -- throughput ---------------------------------------------------------------------------


async def test_200_pings_on_one_socket_all_get_their_reply(clients: Clients, aws_calls) -> None:
    refs = [f"n{i}" for i in range(200)]
    ws = await clients.open()
    await ws.connection_id()
    aws_calls.reset()
    for ref in refs:  # pipelined: the gateway invokes the handler per message, concurrently
        await ws.send_raw({"action": "ping", "ref": ref})
    answers: dict[str, dict[str, Any]] = {}
    while len(answers) < len(refs):
        answer = await ws.recv(timeout=20)
        answers[answer["ref"]] = answer
    assert sorted(answers) == sorted(refs)
    assert all(a["type"] == "reply" and a["ok"] and a["data"]["user_id"] == "ada" for a in answers.values())
    assert aws_calls.calls["dynamodb:Scan"] == 0
