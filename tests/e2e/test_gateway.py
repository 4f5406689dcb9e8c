"""The WebSocket API end to end: real sockets to the emulator, the app's real handlers behind it."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa
from e2e_support import (
    RawWebSocket,
    command,
    connect,
    connection_id,
    connection_record,
    ping,
    recording,
    recv_json,
    replaced,
    serves_others,
    wait_until,
    ws_url,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devstack.gateway import GatewaySettings, WebSocketGateway

pytestmark = pytest.mark.e2e


# -- connect and ping -----------------------------------------------------------


def test_ping_replies_with_the_verified_caller(stack) -> None:
    async def scenario() -> dict[str, Any]:
        async with connect(stack, "ada") as ws:
            return await command(ws, {"action": "ping", "ref": "p1"})

    answer = asyncio.run(scenario())
    assert answer["type"] == "reply"
    assert answer["ref"] == "p1"
    assert answer["ok"] is True
    assert answer["data"]["user_id"] == "ada"
    assert isinstance(answer["data"]["connection_id"], str)


def test_the_stage_path_is_served_too(stack) -> None:
    """Clients connect to wss://…/{stage}; the emulator answers on /{stage} as on /."""

    async def scenario() -> dict[str, Any]:
        url = ws_url(stack, stack.mint_token("ada"), stage=True)
        async with websockets.connect(url, open_timeout=5) as ws:
            return await ping(ws, "staged")

    assert asyncio.run(scenario())["data"]["user_id"] == "ada"


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


def test_bad_tokens_are_refused_with_401_and_the_process_keeps_serving(stack) -> None:
    async def attempt(token: str | None) -> Any:
        url = stack.ws_url if token is None else f"{stack.ws_url}?token={token}"
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url, open_timeout=5):
                pass
        return refused.value.response

    async def scenario() -> None:
        for name, token in _refusal_tokens(stack).items():
            response = await attempt(token)
            assert response.status_code == 401, name
            body = json.loads(response.body)
            assert body["code"] == "unauthorized", name
            assert isinstance(body["message"], str) and body["message"], name
            await serves_others(stack)

    asyncio.run(scenario())


def test_a_refused_connection_never_reaches_disconnect(stack) -> None:
    """API Gateway calls $disconnect only for connections that were established."""
    handlers = stack.gateway._handlers
    with recording(handlers, "$connect") as connects, recording(handlers, "$disconnect") as disconnects:
        with pytest.raises(InvalidStatus):
            asyncio.run(_open_and_close(stack.ws_url + "?token=nope"))
        [refused] = connects.events
        conn_id = refused["requestContext"]["connectionId"]
        time.sleep(0.3)
        assert disconnects.for_connection(conn_id) == []
    assert conn_id not in stack.gateway.connections


async def _open_and_close(url: str) -> None:
    async with websockets.connect(url, open_timeout=5):
        pass


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


def test_bad_messages_get_bad_request_frames_and_the_socket_stays_open(stack) -> None:
    async def scenario() -> None:
        async with connect(stack) as ws:
            for name, frame, ref in BAD_FRAMES:
                answer = await command(ws, frame)
                assert answer["type"] == "error", name
                assert answer["code"] == "bad_request", (name, answer)
                assert answer["ref"] == ref, (name, answer)
                assert isinstance(answer["message"], str) and answer["message"], name
                assert "Traceback" not in answer["message"], name
            answer = await ping(ws, "still-here")
            assert answer["data"]["user_id"] == "ada"

    asyncio.run(scenario())


def test_a_message_of_exactly_128_kb_in_32_kb_frames_is_accepted(stack) -> None:
    """The quota is 128 KB per message, sent in frames of at most 32 KB."""
    envelope = json.dumps({"action": "ping", "ref": "big", "pad": ""})
    message = envelope[:-2] + "x" * (128 * 1024 - len(envelope)) + '"}'
    assert len(message.encode()) == 128 * 1024

    async def scenario() -> None:
        async with connect(stack) as ws:
            await ws.send([message[i : i + 32 * 1024] for i in range(0, len(message), 32 * 1024)])
            answer = await recv_json(ws)
            # it reached the app: refused for the extra field, not by the gateway
            assert (answer["type"], answer["ref"], answer["code"]) == ("error", "big", "bad_request")
            await ping(ws)

    asyncio.run(scenario())


def test_a_message_over_128_kb_closes_the_socket_with_1009(stack) -> None:
    message = json.dumps({"action": "ping", "ref": "huge", "pad": "x" * (128 * 1024)})

    async def scenario() -> str:
        async with connect(stack) as ws:
            conn_id = await connection_id(ws)
            await ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
        await serves_others(stack)
        return conn_id

    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        conn_id = asyncio.run(scenario())
        assert wait_until(lambda: disconnects.for_connection(conn_id))
    assert disconnects.for_connection(conn_id)[0]["requestContext"]["disconnectStatusCode"] == 1009
    assert wait_until(lambda: connection_record(stack, conn_id) is None)


# -- disconnect clean-up ----------------------------------------------------------


def test_closing_the_socket_removes_the_connection_record(stack) -> None:
    async def scenario() -> str:
        async with connect(stack) as ws:
            conn_id = await connection_id(ws)
            record = connection_record(stack, conn_id)
            assert record is not None and record["user_id"] == {"S": "ada"}
        return conn_id

    conn_id = asyncio.run(scenario())
    assert wait_until(lambda: connection_record(stack, conn_id) is None, timeout=3)


def test_a_dropped_tcp_connection_is_cleaned_up_too(stack) -> None:
    """No close frame at all (network loss): $disconnect still runs, with 1006."""
    with recording(stack.gateway._handlers, "$disconnect") as disconnects:
        raw = RawWebSocket(stack, stack.mint_token("ada"))
        assert raw.status == 101
        raw.send_frame(0x1, b'{"action":"ping","ref":"r"}')
        conn_id = json.loads(raw.read_frame()[1])["data"]["connection_id"]
        assert connection_record(stack, conn_id) is not None
        raw.close()
        assert wait_until(lambda: disconnects.for_connection(conn_id))
    assert disconnects.for_connection(conn_id)[0]["requestContext"]["disconnectStatusCode"] == 1006
    assert wait_until(lambda: connection_record(stack, conn_id) is None)
    assert conn_id not in stack.gateway.connections


# -- limits: idle timeout and maximum duration ------------------------------------


def _closed_by_server(exc: ConnectionClosed) -> int | None:
    return exc.rcvd.code if exc.rcvd is not None else None


def test_an_idle_connection_is_closed_with_1001(stack) -> None:
    settings = stack.gateway.settings
    saved = settings.idle_timeout_seconds
    settings.idle_timeout_seconds = 1

    async def scenario() -> tuple[str, float, int | None]:
        async with connect(stack) as ws:
            conn_id = await connection_id(ws)  # the last activity
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 4)
            return conn_id, time.monotonic() - started, _closed_by_server(closed.value)

    try:
        with recording(stack.gateway._handlers, "$disconnect") as disconnects:
            conn_id, elapsed, code = asyncio.run(scenario())
            assert wait_until(lambda: disconnects.for_connection(conn_id))
    finally:
        settings.idle_timeout_seconds = saved
    assert code == 1001
    assert 0.5 <= elapsed <= 2.5
    ctx = disconnects.for_connection(conn_id)[0]["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")
    assert wait_until(lambda: connection_record(stack, conn_id) is None)


def test_activity_defers_the_idle_timeout(stack) -> None:
    settings = stack.gateway.settings
    saved = settings.idle_timeout_seconds
    settings.idle_timeout_seconds = 1

    async def scenario() -> None:
        async with connect(stack) as ws:
            for i in range(6):  # 1.8 s in all, never idle for 1 s
                await asyncio.sleep(0.3)
                await ping(ws, f"keep-{i}")

    try:
        asyncio.run(scenario())
    finally:
        settings.idle_timeout_seconds = saved


def test_a_connection_is_closed_with_1001_at_its_maximum_duration(stack) -> None:
    settings = stack.gateway.settings
    saved = settings.max_connection_seconds
    settings.max_connection_seconds = 1.5

    async def scenario() -> tuple[float, int | None]:
        async with connect(stack) as ws:
            started = time.monotonic()
            try:
                for i in range(20):  # busy, never idle: only the duration limit applies
                    await ping(ws, f"busy-{i}")
                    await asyncio.sleep(0.2)
            except ConnectionClosed as closed:
                return time.monotonic() - started, _closed_by_server(closed)
            raise AssertionError("the connection outlived its maximum duration")

    try:
        elapsed, code = asyncio.run(scenario())
    finally:
        settings.max_connection_seconds = saved
    assert code == 1001
    assert 1.0 <= elapsed <= 3.0


# -- integration failures -----------------------------------------------------------


def test_a_handler_that_raises_gives_api_gateways_error_frame_and_the_socket_stays_open(stack) -> None:
    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("simulated Lambda failure")

    async def scenario() -> None:
        async with connect(stack) as ws:
            conn_id = await connection_id(ws)
            with replaced(stack.gateway._handlers, "$default", broken):
                answer = await command(ws, {"action": "ping", "ref": "doomed"})
            assert set(answer) == {"message", "connectionId", "requestId"}
            assert answer["message"] == "Internal server error"
            assert answer["connectionId"] == conn_id
            assert isinstance(answer["requestId"], str) and answer["requestId"]
            await ping(ws, "after")

    asyncio.run(scenario())


def test_a_connect_handler_that_raises_refuses_the_upgrade(stack) -> None:
    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("simulated Lambda failure")

    with replaced(stack.gateway._handlers, "$connect", broken), pytest.raises(InvalidStatus) as refused:
        asyncio.run(_open_and_close(ws_url(stack, stack.mint_token("ada"))))
    assert refused.value.response.status_code >= 500
    asyncio.run(serves_others(stack))


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


def test_200_pings_on_one_socket_all_get_their_reply(stack, aws_calls) -> None:
    refs = [f"n{i}" for i in range(200)]

    async def scenario() -> dict[str, dict[str, Any]]:
        async with connect(stack) as ws:
            await connection_id(ws)
            aws_calls.reset()
            for ref in refs:  # pipelined: the gateway invokes the handler per message, concurrently
                await ws.send(json.dumps({"action": "ping", "ref": ref}))
            answers: dict[str, dict[str, Any]] = {}
            while len(answers) < len(refs):
                answer = await recv_json(ws, timeout=20)
                answers[answer["ref"]] = answer
            return answers

    answers = asyncio.run(scenario())
    assert sorted(answers) == sorted(refs)
    assert all(a["type"] == "reply" and a["ok"] and a["data"]["user_id"] == "ada" for a in answers.values())
    assert aws_calls.calls["dynamodb:Scan"] == 0
