"""Legacy: the e2e helpers moved to tests/e2e/conftest.py (fixtures, and helpers imported from there).

Kept so that tests written against the old helpers still run. New tests use the `clients`
fixture (a sohbet_client-based `Client`: `ws.command(frame)`, `ws.recv()`, `ws.ping_raw()`,
`ws.connection_id()`, `clients.serves_others()`, `ws.abort()`, `ws.close(code=None)`).
The raw-socket helpers below are the old ones; delete this module once no test imports it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from conftest import (  # noqa: F401  (re-exported under their old names)
    FIXTURES,
    TIMEOUT,
    Recorder,
    await_until,
    aws_client,
    connection_record,
    fixture,
    management_client,
    recording,
    replaced,
    wait_until,
    ws_url,
)


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
