"""The client's side of the broadcast tier: AWS AppSync Events' realtime WebSocket protocol.

A space on the tier says so in its `space.join` reply (`data.broadcast`: channel, realtime URL,
HTTP host). The client opens one socket to the realtime endpoint for all its spaces, offering
the subprotocols `aws-appsync-event-ws` and `header-<base64url JSON {"host", "Authorization"}>`,
sends `connection_init`, waits for `connection_ack`, and subscribes to each space's channel with
its token as the `Authorization` header. Each `data` message carries one room event (the same
JSON frame API Gateway would have posted), handed to `on_event`.
https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.typing import Subprotocol

log = logging.getLogger("sohbet_client.broadcast")

PROTOCOL = "aws-appsync-event-ws"


class BroadcastError(Exception):
    """The Event API refused the connection or a subscription: its errorType and message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def header_subprotocol(host: str, authorization: str) -> str:
    """`header-` + the authorization headers as unpadded base64url JSON."""
    raw = json.dumps({"host": host, "Authorization": authorization}, separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _first_error(frame: dict[str, Any]) -> BroadcastError:
    found = frame.get("errors")
    first = found[0] if isinstance(found, list) and found and isinstance(found[0], dict) else {}
    return BroadcastError(str(first.get("errorType", "Unknown")), str(first.get("message", frame)))


class BroadcastLink:
    """One realtime socket with its subscriptions; events go to `on_event` as parsed frames."""

    def __init__(
        self,
        realtime_url: str,
        http_host: str,
        token: str,
        on_event: Callable[[dict[str, Any]], None],
        open_timeout: float = 10.0,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.realtime_url = realtime_url
        self.http_host = http_host
        self.token = token
        self.on_event = on_event
        self.open_timeout = open_timeout
        self.on_lost = on_lost  # the socket closed without close(): subscriptions are gone
        self.closing = False
        self.connection_timeout_ms: int | None = None
        self.last_keepalive: float | None = None
        self.received = 0  # data messages
        self.connections = 0  # sockets opened (a lost one is replaced)
        self.channels: dict[str, str] = {}  # channel -> subscription id
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}  # id -> its answer
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._ids = itertools.count(1)

    @property
    def open(self) -> bool:
        return self._ws is not None and self._reader is not None and not self._reader.done()

    async def _connect(self) -> ClientConnection:
        async with self._connecting:
            if self.open:
                assert self._ws is not None
                return self._ws
            protocols = [Subprotocol(PROTOCOL), Subprotocol(header_subprotocol(self.http_host, self.token))]
            ws = await ws_connect(self.realtime_url, subprotocols=protocols, open_timeout=self.open_timeout)
            await ws.send(json.dumps({"type": "connection_init"}))
            async with asyncio.timeout(self.open_timeout):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "connection_ack":
                        self.connection_timeout_ms = frame.get("connectionTimeoutMs")
                        break
                    if frame.get("type") == "connection_error":
                        await ws.close()
                        raise _first_error(frame)
            self._ws = ws
            self.connections += 1
            self.channels.clear()
            self._reader = asyncio.create_task(self._read(ws), name="sohbet-broadcast-reader")
            return ws

    async def _ask(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]:
        ws = await self._connect()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[frame["id"]] = future
        try:
            await ws.send(json.dumps(frame))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._waiting.pop(frame["id"], None)

    async def subscribe(self, channel: str, timeout: float = 10.0) -> str:
        """Subscribe to `channel` (once); the subscription id. BroadcastError when refused."""
        if channel in self.channels and self.open:
            return self.channels[channel]
        ident = f"s{next(self._ids)}"
        answer = await self._ask(
            {
                "type": "subscribe",
                "id": ident,
                "channel": channel,
                "authorization": {"host": self.http_host, "Authorization": self.token},
            },
            timeout,
        )
        if answer.get("type") != "subscribe_success":
            raise _first_error(answer)
        self.channels[channel] = ident
        return ident

    async def unsubscribe(self, channel: str, timeout: float = 10.0) -> bool:
        ident = self.channels.pop(channel, None)
        if ident is None or not self.open:
            return False
        answer = await self._ask({"type": "unsubscribe", "id": ident}, timeout)
        return answer.get("type") == "unsubscribe_success"

    async def close(self) -> None:
        self.closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader

    def abort(self) -> None:
        """Drop the socket without a closing handshake (a lost network)."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    log.warning("not JSON from the Event API: %r", raw[:200])
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame)
        except WsConnectionClosed:
            pass
        finally:
            had = bool(self.channels)
            self.channels.clear()
            for future in self._waiting.values():
                if not future.done():
                    future.set_result(
                        {"type": "closed", "errors": [{"errorType": "Closed", "message": "closed"}]}
                    )
            if had and not self.closing and self.on_lost is not None:
                self.on_lost()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "data":
            event = frame.get("event")
            try:
                parsed = json.loads(event) if isinstance(event, str) else None
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                self.received += 1
                self.on_event(parsed)
            else:
                log.warning("a data message without a JSON object event: %r", frame)
        elif kind == "ka":
            self.last_keepalive = time.monotonic()
        elif isinstance(frame.get("id"), str) and frame["id"] in self._waiting:
            future = self._waiting[frame["id"]]
            if not future.done():
                future.set_result(frame)
        else:
            log.warning("unexpected message from the Event API: %r", frame)
