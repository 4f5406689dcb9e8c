"""AWS AppSync Events on loopback: an Event API's realtime WebSocket and its HTTP publish endpoint.

The app publishes and clients subscribe exactly as they do in AWS, only the URLs differ
(docs/asyncapi.yaml, "The broadcast tier"; chalicelib/broadcast.py):

- `WS /event/realtime`, subprotocols `aws-appsync-event-ws` and `header-<base64url JSON of the
  authorization headers, {"host", "Authorization"}>`. The connection is authorised when it opens
  (the app's Lambda authorizer, operation EVENT_CONNECT); then `connection_init` →
  `connection_ack {connectionTimeoutMs}`, `ka` every `ka_seconds`; `subscribe {id, channel,
  authorization}` → `subscribe_success` | `subscribe_error` (EVENT_SUBSCRIBE, asked at every
  subscribe); `unsubscribe {id}` → `unsubscribe_success` | `unsubscribe_error`; `publish {id,
  channel, events, authorization}` → `publish_success` | `publish_error` (EVENT_PUBLISH); events
  arrive as `data {id, event}` with the event as the JSON string published.
  https://docs.aws.amazon.com/appsync/latest/eventapi/event-api-websocket-protocol.html
- `POST /event` `{"channel", "events": [1-5 JSON strings]}`, SigV4-signed for the service
  `appsync` with the local credentials (devstack/sigv4.py); answered `{"successful": [{"identifier",
  "index"}], "failed": [...]}`. https://docs.aws.amazon.com/appsync/latest/eventapi/publish-http.html

Channel paths are `/namespace[/segment]…`, at most 5 segments of letters, digits and `-` (at
most 50 each); a subscription may end in `/*`. Only the configured namespaces exist. Where AWS
does not document an exact error (a missing auth header, a malformed frame) the emulator
answers with the documented shapes (`connection_error`, `error`, `*_error` with
`errors: [{errorType, message}]`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

log = logging.getLogger("devstack.eventapi")

PROTOCOL = "aws-appsync-event-ws"
HEADER_PREFIX = "header-"
CONNECTION_TIMEOUT_MS = 300_000  # what AppSync's connection_ack says
MAX_EVENTS = 5
MAX_EVENT_BYTES = 240 * 1024
MAX_SEGMENTS = 5
_SEGMENT = re.compile(r"^[A-Za-z0-9-]{1,50}$")
UNAUTHORIZED = "UnauthorizedException"
BAD_REQUEST = "BadRequestException"

Authorizer = Callable[[dict[str, Any], Any], Any]


def errors(error_type: str, message: str) -> list[dict[str, str]]:
    return [{"errorType": error_type, "message": message}]


def check_channel(path: Any, namespaces: frozenset[str], subscribing: bool) -> str | None:
    """Why `path` is not a usable channel (None: it is)."""
    if not isinstance(path, str) or not path.startswith("/"):
        return "a channel is a path that starts with /"
    segments = path[1:].split("/")
    if len(segments) > MAX_SEGMENTS:
        return f"a channel has at most {MAX_SEGMENTS} segments"
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "*" and last and subscribing and i > 0:
            continue
        if not _SEGMENT.fullmatch(segment):
            return f"channel segment {segment[:60]!r} must be 1-50 letters, digits or -"
    if segments[0] not in namespaces:
        return f"no channel namespace {segments[0]!r}"
    return None


def matches(subscribed: str, published: str) -> bool:
    if subscribed.endswith("/*"):
        return published.startswith(subscribed[:-1])
    return subscribed == published


def decode_header(protocols: list[str]) -> dict[str, Any] | None:
    """The authorization headers carried in the `header-…` subprotocol (base64url JSON)."""
    for offered in protocols:
        if offered.startswith(HEADER_PREFIX):
            raw = offered[len(HEADER_PREFIX) :]
            try:
                decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return None
            return decoded if isinstance(decoded, dict) else None
    return None


@dataclass(eq=False)  # kept in a set, by identity
class Subscriber:
    websocket: WebSocket
    headers: dict[str, Any]
    subscriptions: dict[str, str] = field(default_factory=dict)  # id -> channel
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    open: bool = True


@dataclass
class EventApiSettings:
    api_id: str = "sohbetevents"
    namespaces: frozenset[str] = frozenset({"spaces"})
    region: str = "us-east-1"
    signing_secrets: dict[str, str] = field(default_factory=lambda: {"testing": "testing"})
    ka_seconds: float = 60.0


class EventApiEmulator:
    """One Event API: its subscribers, the Lambda authorizer it asks, and what was published."""

    def __init__(
        self,
        authorizer: Authorizer,
        executor: Executor,
        context_factory: Callable[[], Any],
        settings: EventApiSettings | None = None,
    ) -> None:
        self._authorizer = authorizer
        self._executor = executor
        self._context_factory = context_factory
        self.settings = settings or EventApiSettings()
        self.subscribers: set[Subscriber] = set()
        self.published = 0  # HTTP publish requests accepted
        self.log: collections.deque[tuple[str, list[str]]] = collections.deque(
            maxlen=10_000
        )  # (channel, events)
        self.events_published = 0  # events in them
        self.delivered = 0  # data messages sent to subscribers
        self.authorizer_calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the Lambda authorizer --------------------------------------------------------

    async def _authorized(self, headers: dict[str, Any], operation: str, channel: str | None) -> bool:
        token = next((v for k, v in headers.items() if str(k).lower() == "authorization"), None)
        if not isinstance(token, str) or not token:
            return False
        context: dict[str, Any] = {
            "apiId": self.settings.api_id,
            "accountId": "123456789012",
            "requestId": str(uuid.uuid4()),
            "operation": operation,
        }
        if channel is not None:  # AppSync leaves both out of a connect
            context["channelNamespaceName"] = channel[1:].split("/")[0]
            context["channel"] = channel
        event = {
            "authorizationToken": token,
            "requestContext": context,
            "requestHeaders": {str(k).lower(): str(v) for k, v in headers.items()},
        }
        self.authorizer_calls += 1
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(
                self._executor, self._authorizer, event, self._context_factory()
            )
        except Exception:
            log.exception("the Lambda authorizer raised")
            return False
        return isinstance(answer, dict) and answer.get("isAuthorized") is True

    # -- WebSocket ----------------------------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p]
        if PROTOCOL not in offered:
            await websocket.send_denial_response(
                JSONResponse({"errors": errors(BAD_REQUEST, f"subprotocol {PROTOCOL} is required")}, 400)
            )
            return
        await websocket.accept(subprotocol=PROTOCOL)
        headers = decode_header(offered)
        if headers is None or not await self._authorized(headers, "EVENT_CONNECT", None):
            with contextlib.suppress(Exception):
                await websocket.send_text(
                    json.dumps(
                        {
                            "type": "connection_error",
                            "errors": errors(UNAUTHORIZED, "You are not authorized to make this call."),
                        }
                    )
                )
                await websocket.close(code=1008)
            return
        sub = Subscriber(websocket, headers)
        self.subscribers.add(sub)
        keepalive: asyncio.Task[None] | None = None
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                try:
                    frame = json.loads(text) if text is not None else None
                except ValueError:
                    frame = None
                if not isinstance(frame, dict):
                    await self._send(
                        sub, {"type": "error", "errors": errors(BAD_REQUEST, "not a JSON object")}
                    )
                    continue
                kind = frame.get("type")
                if kind == "connection_init":
                    await self._send(
                        sub, {"type": "connection_ack", "connectionTimeoutMs": CONNECTION_TIMEOUT_MS}
                    )
                    if keepalive is None:
                        keepalive = asyncio.create_task(self._keepalive(sub))
                elif kind == "subscribe":
                    await self._subscribe(sub, frame)
                elif kind == "unsubscribe":
                    await self._unsubscribe(sub, frame)
                elif kind == "publish":
                    await self._publish_ws(sub, frame)
                else:
                    await self._send(
                        sub,
                        {"type": "error", "errors": errors(BAD_REQUEST, f"unknown message type {kind!r}")},
                    )
        except Exception:
            log.exception("Event API socket failed")
        finally:
            sub.open = False
            self.subscribers.discard(sub)
            if keepalive is not None:
                keepalive.cancel()

    async def _keepalive(self, sub: Subscriber) -> None:
        while sub.open:
            await asyncio.sleep(self.settings.ka_seconds)
            if not await self._send(sub, {"type": "ka"}):
                return

    async def _send(self, sub: Subscriber, frame: dict[str, Any]) -> bool:
        async with sub.send_lock:
            try:
                await sub.websocket.send_text(json.dumps(frame, separators=(",", ":")))
            except Exception:
                sub.open = False
                return False
        return True

    def _id_of(self, frame: dict[str, Any]) -> str | None:
        ident = frame.get("id")
        return ident if isinstance(ident, str) and 0 < len(ident) <= 128 else None

    async def _subscribe(self, sub: Subscriber, frame: dict[str, Any]) -> None:
        ident = self._id_of(frame)
        channel = frame.get("channel")

        async def refuse(error_type: str, message: str) -> None:
            await self._send(
                sub, {"type": "subscribe_error", "id": ident, "errors": errors(error_type, message)}
            )

        if ident is None:
            return await refuse(BAD_REQUEST, "a subscription needs an id (1-128 characters)")
        if ident in sub.subscriptions:
            return await refuse(BAD_REQUEST, "this id already names a subscription on this connection")
        problem = check_channel(channel, self.settings.namespaces, subscribing=True)
        if problem is not None:
            return await refuse(BAD_REQUEST, problem)
        authorization = frame.get("authorization")
        if not isinstance(authorization, dict) or not await self._authorized(
            authorization, "EVENT_SUBSCRIBE", channel
        ):
            return await refuse(UNAUTHORIZED, "You are not authorized to make this call.")
        if not sub.open:
            return None
        sub.subscriptions[ident] = channel
        await self._send(sub, {"type": "subscribe_success", "id": ident})
        return None

    async def _unsubscribe(self, sub: Subscriber, frame: dict[str, Any]) -> None:
        ident = self._id_of(frame)
        if ident is None or sub.subscriptions.pop(ident, None) is None:
            await self._send(
                sub,
                {
                    "type": "unsubscribe_error",
                    "id": ident,
                    "errors": errors(BAD_REQUEST, "no such subscription"),
                },
            )
            return
        await self._send(sub, {"type": "unsubscribe_success", "id": ident})

    async def _publish_ws(self, sub: Subscriber, frame: dict[str, Any]) -> None:
        ident = self._id_of(frame)
        channel, events = frame.get("channel"), frame.get("events")
        problem = check_channel(channel, self.settings.namespaces, subscribing=False) or _check_events(events)
        if problem is not None:
            await self._send(
                sub, {"type": "publish_error", "id": ident, "errors": errors(BAD_REQUEST, problem)}
            )
            return
        authorization = frame.get("authorization")
        if not isinstance(authorization, dict) or not await self._authorized(
            authorization, "EVENT_PUBLISH", channel
        ):
            await self._send(
                sub,
                {
                    "type": "publish_error",
                    "id": ident,
                    "errors": errors(UNAUTHORIZED, "You are not authorized to make this call."),
                },
            )
            return
        accepted = self._fan_out(channel, events)
        await self._send(sub, {"type": "publish_success", "id": ident, "successful": accepted, "failed": []})

    # -- publishing -----------------------------------------------------------------------

    def _fan_out(self, channel: str, events: list[str]) -> list[dict[str, Any]]:
        self.events_published += len(events)
        for sub in list(self.subscribers):
            ids = [ident for ident, subscribed in sub.subscriptions.items() if matches(subscribed, channel)]
            if ids:
                task = asyncio.create_task(self._deliver(sub, ids, events))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return [{"identifier": str(uuid.uuid4()), "index": i} for i in range(len(events))]

    async def _deliver(self, sub: Subscriber, ids: list[str], events: list[str]) -> None:
        for event in events:
            for ident in ids:
                if await self._send(sub, {"type": "data", "id": ident, "event": event}):
                    self.delivered += 1

    async def publish_http(self, request: Request) -> Response:
        from devstack.sigv4 import SignatureError, verify

        body = await request.body()
        scope = request.scope
        url = f"http://{request.headers.get('host', '')}{scope['raw_path'].decode('latin-1')}"
        try:
            verify(
                "POST",
                url,
                {k.lower(): v for k, v in request.headers.items()},
                body,
                self.settings.signing_secrets,
                self.settings.region,
                service="appsync",
            )
        except SignatureError as exc:
            return JSONResponse({"errors": errors(UNAUTHORIZED, exc.message)}, 401)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return JSONResponse({"errors": errors(BAD_REQUEST, "the body must be a JSON object")}, 400)
        channel, events = payload.get("channel"), payload.get("events")
        problem = check_channel(channel, self.settings.namespaces, subscribing=False) or _check_events(events)
        if problem is not None:
            return JSONResponse({"errors": errors(BAD_REQUEST, problem)}, 400)
        self.published += 1
        self.log.append((channel, list(events)))
        accepted = self._fan_out(channel, events)
        return JSONResponse({"successful": accepted, "failed": []})

    def publishes(self, channel: str, since: int = 0) -> list[list[dict[str, Any]]]:
        """The HTTP publishes to `channel` (their events parsed), from index `since` of the log."""
        return [[json.loads(e) for e in events] for c, events in list(self.log)[since:] if c == channel]

    def snapshot(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "events_published": self.events_published,
            "delivered": self.delivered,
            "connections": len(self.subscribers),
            "subscriptions": sum(len(s.subscriptions) for s in self.subscribers),
            "authorizer_calls": self.authorizer_calls,
            "at": time.time(),
        }

    def routes(self) -> list[Any]:
        return [
            Route("/event", self.publish_http, methods=["POST"]),
            WebSocketRoute("/event/realtime", self.serve),
        ]


def _check_events(events: Any) -> str | None:
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        return f"events must be a list of 1 to {MAX_EVENTS} JSON strings"
    for event in events:
        if not isinstance(event, str):
            return "every event must be a string holding JSON"
        if len(event.encode()) > MAX_EVENT_BYTES:
            return "an event is larger than 240 KB"
        try:
            json.loads(event)
        except ValueError:
            return "every event must be valid JSON"
    return None
