"""Helpers shared by the end-to-end tests: WebSocket clients, handler recording, polling."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import websockets
from botocore.config import Config

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 5.0


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def ws_url(stack: Any, token: str | None = None, stage: bool = False) -> str:
    url = stack.ws_url + (stack.options.stage if stage else "")
    return url if token is None else f"{url}?token={token}"


def connect(stack: Any, user: str = "ada", token: str | None = None, **kwargs: Any) -> Any:
    """An async context manager: a WebSocket connection authenticated as `user`."""
    return websockets.connect(ws_url(stack, token or stack.mint_token(user)), open_timeout=TIMEOUT, **kwargs)


async def recv_json(ws: Any, timeout: float = TIMEOUT) -> Any:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def command(ws: Any, message: Any, timeout: float = TIMEOUT) -> Any:
    """Send one frame (a dict is JSON-encoded, str/bytes go as they are) and read the next frame."""
    await ws.send(json.dumps(message) if isinstance(message, dict) else message)
    return await recv_json(ws, timeout)


async def ping(ws: Any, ref: str = "p") -> dict[str, Any]:
    answer = await command(ws, {"action": "ping", "ref": ref})
    assert answer["type"] == "reply", answer
    assert answer["ref"] == ref and answer["ok"] is True, answer
    return answer


async def connection_id(ws: Any) -> str:
    return (await ping(ws, "whoami"))["data"]["connection_id"]


async def serves_others(stack: Any) -> None:
    """The process still accepts a new connection and answers on it."""
    async with connect(stack, "grace") as ws:
        answer = await ping(ws, "alive")
        assert answer["data"]["user_id"] == "grace"


def wait_until(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


async def await_until(predicate: Callable[[], Any], timeout: float = 3.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


class Recorder:
    """Events passed to one handler while installed, newest last."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(copy.deepcopy(event))

    def for_connection(self, conn_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["requestContext"]["connectionId"] == conn_id]


@contextlib.contextmanager
def recording(handlers: dict[str, Any], route_key: str) -> Iterator[Recorder]:
    """Wrap handlers[route_key] so that every event it gets is recorded; restore on exit."""
    original = handlers[route_key]
    recorder = Recorder()

    def wrapper(event: dict[str, Any], context: Any) -> Any:
        recorder.add(event)
        return original(event, context)

    handlers[route_key] = wrapper
    try:
        yield recorder
    finally:
        handlers[route_key] = original


@contextlib.contextmanager
def replaced(handlers: dict[str, Any], route_key: str, handler: Callable[..., Any]) -> Iterator[None]:
    original = handlers[route_key]
    handlers[route_key] = handler
    try:
        yield
    finally:
        handlers[route_key] = original


def aws_client(stack: Any, service: str) -> Any:
    return stack.aws.client(service)


def management_client(endpoint: str) -> Any:
    """boto3's apigatewaymanagementapi client, as the app builds it, pointed at the emulator."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


def connection_record(stack: Any, conn_id: str) -> dict[str, Any] | None:
    """The connection's item in the connections table, read straight from moto (not through the app)."""
    dynamodb = aws_client(stack, "dynamodb")
    items = dynamodb.query(
        TableName=stack.env["CONNECTIONS_TABLE"],
        KeyConditionExpression="connection_id = :id",
        ExpressionAttributeValues={":id": {"S": conn_id}},
        ConsistentRead=True,
    )["Items"]
    return items[0] if items else None


class RawWebSocket:
    """A hand-made client over a plain socket, for frames the websockets library will not send."""

    def __init__(self, stack: Any, token: str) -> None:
        import base64
        import os
        import socket

        self.sock = socket.create_connection((stack.options.host, stack.port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /?token={token} HTTP/1.1\r\nHost: {stack.options.host}:{stack.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during the handshake"
            response += chunk
        self.status = int(response.split(b" ", 2)[1])
        self.buffer = response.split(b"\r\n\r\n", 1)[1]

    def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        import os

        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def read_frame(self) -> tuple[int, bytes]:
        while len(self.buffer) < 2:
            self.buffer += self.sock.recv(4096)
        length = self.buffer[1] & 0x7F
        header = 2 + (2 if length == 126 else 8 if length == 127 else 0)
        while len(self.buffer) < header:
            self.buffer += self.sock.recv(4096)
        if length >= 126:
            length = int.from_bytes(self.buffer[2:header], "big")
        while len(self.buffer) < header + length:
            self.buffer += self.sock.recv(4096)
        opcode, payload = self.buffer[0] & 0x0F, self.buffer[header : header + length]
        self.buffer = self.buffer[header + length :]
        return opcode, payload

    def close(self) -> None:
        self.sock.close()
