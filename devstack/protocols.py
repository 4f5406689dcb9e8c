"""uvicorn's HTTP and WebSocket protocols, with the two fixes the local stack needs.

- A request line or header too long for the WebSocket handshake parser (the
  `websockets` library reads lines of at most 8,192 bytes) used to leave the
  client hanging: uvicorn's h11 protocol accepted it, handed the upgrade over, and
  the WebSocket side never answered. Every request is now measured first. An upgrade
  with a target over 8,192 bytes gets 414, a header line over 8,190 bytes 431; plain
  HTTP gets the same past 64 KiB; more than 100 headers, or a head that never ends
  within h11's buffer, 431. The body is the app's uniform error body.
- A handshake the app refuses (401, 403, 429 from $connect, sent as an ASGI
  denial response) was logged as an error ("ASGI callable returned without
  completing handshake"): a refusal is an answer, not a failure.
"""

from __future__ import annotations

import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

MAX_UPGRADE_TARGET_BYTES = 8192  # the `websockets` handshake parser's line limit
MAX_UPGRADE_HEADER_LINE_BYTES = 8190
MAX_TARGET_BYTES = MAX_HEADER_LINE_BYTES = 64 * 1024
MAX_HEADERS = 100


class _TooLarge(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def refusal(event: h11.Request) -> _TooLarge | None:
    upgrade = any(name == b"upgrade" for name, _ in event.headers)
    max_target = MAX_UPGRADE_TARGET_BYTES if upgrade else MAX_TARGET_BYTES
    max_line = MAX_UPGRADE_HEADER_LINE_BYTES if upgrade else MAX_HEADER_LINE_BYTES
    if len(event.target) > max_target:
        return _TooLarge(414, f"request target longer than {max_target} bytes")
    if len(event.headers) > MAX_HEADERS:
        return _TooLarge(431, f"more than {MAX_HEADERS} request headers")
    if any(len(name) + len(value) + 2 > max_line for name, value in event.headers):
        return _TooLarge(431, f"a request header line longer than {max_line} bytes")
    return None


class _MeasuredConnection:
    """h11.Connection whose next_event refuses oversized requests before anyone acts on them."""

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def next_event(self) -> Any:
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            # a head that never ends within h11's buffer limit (h11 hints 431)
            if exc.error_status_hint == 431:
                raise _TooLarge(431, "request head too large") from None
            raise
        if isinstance(event, h11.Request):
            problem = refusal(event)
            if problem is not None:
                raise problem
        return event


class BoundedH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _MeasuredConnection(self.conn)  # type: ignore[assignment]

    def handle_events(self) -> None:
        try:
            super().handle_events()
        except _TooLarge as problem:
            self._refuse(problem)

    def _refuse(self, problem: _TooLarge) -> None:
        body = json.dumps({"code": "bad_request", "message": problem.message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        reason = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}[problem.status]
        response = h11.Response(status_code=problem.status, headers=headers, reason=reason)
        self.transport.write(self.conn.send(response))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()


class QuietRefusalWebSocketProtocol(WebSocketsSansIOProtocol):
    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # the denial response is complete: the handshake ended, with a refusal
            self.handshake_complete = True
