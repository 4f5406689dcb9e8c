"""An API Gateway WebSocket API on loopback, calling the Chalice app's handlers.

It gives the app what API Gateway gives it: connection ids, the $connect,
MESSAGE and $disconnect events with every documented field, route selection on
`$request.body.action`, the answers API Gateway sends when an integration fails,
the idle and maximum-duration limits, and the `@connections` management API
that boto3's `apigatewaymanagementapi` client calls (POST, GET, DELETE, with
the same status codes and `x-amzn-ErrorType` headers, so boto3 raises the same
modelled exceptions).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

log = logging.getLogger("devstack.gateway")

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message quota
CLOSE_GOING_AWAY = 1001
CLOSE_MESSAGE_TOO_BIG = 1009

LambdaHandler = Callable[[dict[str, Any], Any], Any]


def new_connection_id() -> str:
    # 11 random bytes -> 16 urlsafe base64 characters ending in "=", the shape
    # API Gateway uses; urlsafe so that @connections/{id} stays one path segment.
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _request_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(12)).decode()


def _trace_id() -> str:
    # X-Ray's trace header: Root=1-{epoch seconds, hex}-{96 random bits, hex}
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _clf_time(epoch_ms: int) -> str:
    # API Gateway's requestTime: "09/Apr/2015:12:34:56 +0000"
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class GatewaySettings:
    api_id: str = "sohbetlocal"
    stage: str = "dev"
    domain_name: str = "127.0.0.1:8000"
    idle_timeout_seconds: float = 600.0
    max_connection_seconds: float = 7200.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # @connections needs IAM (SigV4) as in API Gateway: access key id -> secret key.
    region: str = "us-east-1"
    signing_secrets: dict[str, str] = field(default_factory=lambda: {"testing": "testing"})


@dataclass
class Connection:
    connection_id: str
    websocket: WebSocket
    connected_at: int
    source_ip: str
    user_agent: str
    last_active_at: int
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closing: tuple[int, str] | None = None  # set when the server closes the socket
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class WebSocketGateway:
    """Serves WebSocket clients and the @connections API for one Chalice app."""

    def __init__(
        self,
        handlers: dict[str, LambdaHandler],
        executor: Executor,
        context_factory: Callable[[], Any],
        settings: GatewaySettings,
    ) -> None:
        # route key ($connect, $default, $disconnect, custom) -> Lambda handler
        self._handlers = handlers
        self._executor = executor
        self._context_factory = context_factory
        self.settings = settings
        self.connections: dict[str, Connection] = {}
        self.posted = 0  # messages delivered through @connections
        self._faults: dict[str, int | None] = {}  # @connections method -> failures left (None: until lifted)

    # -- events ------------------------------------------------------------

    def _request_context(self, conn_id: str, connected_at: int, route_key: str, event_type: str, **extra):
        now = _now_ms()
        ctx: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": _request_id(),
            "requestTime": _clf_time(now),
            "messageDirection": "IN",
            "stage": self.settings.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "requestId": _request_id(),
            "domainName": self.settings.domain_name,
            "connectionId": conn_id,
            "apiId": self.settings.api_id,
        }
        ctx.update(extra)
        return ctx

    def connect_event(self, websocket: WebSocket, conn_id: str, connected_at: int) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for raw_name, raw_value in websocket.scope["headers"]:
            name = _canonical_header(raw_name.decode("latin-1"))
            value = raw_value.decode("latin-1")
            multi.setdefault(name, []).append(value)
            headers[name] = value
        client_ip = websocket.client.host if websocket.client else "127.0.0.1"
        server = websocket.scope.get("server") or (None, 80)
        # The headers API Gateway adds to every $connect request.
        for name, value in (
            ("X-Amzn-Trace-Id", _trace_id()),
            ("X-Forwarded-For", client_ip),
            ("X-Forwarded-Port", str(server[1])),
            ("X-Forwarded-Proto", "http"),
        ):
            headers.setdefault(name, value)
            multi.setdefault(name, [value])
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._request_context(
                conn_id,
                connected_at,
                "$connect",
                "CONNECT",
                identity={"userAgent": headers.get("User-Agent", ""), "sourceIp": client_ip},
            ),
            "isBase64Encoded": False,
        }
        query_multi: dict[str, list[str]] = {}
        for key, value in websocket.query_params.multi_items():
            query_multi.setdefault(key, []).append(value)
        # API Gateway leaves both keys out when there is no query string.
        if query_multi:
            event["queryStringParameters"] = {k: v[-1] for k, v in query_multi.items()}
            event["multiValueQueryStringParameters"] = query_multi
        return event

    def message_event(self, conn: Connection, route_key: str, body: str, is_base64: bool) -> dict[str, Any]:
        return {
            "requestContext": self._request_context(
                conn.connection_id,
                conn.connected_at,
                route_key,
                "MESSAGE",
                messageId=_request_id(),
                identity={"sourceIp": conn.source_ip},
            ),
            "body": body,
            "isBase64Encoded": is_base64,
        }

    def disconnect_event(self, conn: Connection, status_code: int, reason: str) -> dict[str, Any]:
        host = self.settings.domain_name
        headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        return {
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "requestContext": self._request_context(
                conn.connection_id,
                conn.connected_at,
                "$disconnect",
                "DISCONNECT",
                disconnectStatusCode=status_code,
                disconnectReason=reason,
                identity={"userAgent": conn.user_agent, "sourceIp": conn.source_ip},
            ),
            "isBase64Encoded": False,
        }

    def select_route(self, body: str) -> str:
        """Route selection expression `$request.body.action`, then `$default`."""
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):  # too deep for the decoder: no action to select on
            return "$default"
        if isinstance(parsed, dict):
            action = parsed.get("action")
            if isinstance(action, str) and action in self._handlers and not action.startswith("$"):
                return action
        return "$default"

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> Any:
        handler = self._handlers[route_key]
        loop = asyncio.get_running_loop()
        # Off the event loop: handlers call back into this process over HTTP.
        return await loop.run_in_executor(self._executor, handler, event, self._context_factory())

    # -- WebSocket endpoint --------------------------------------------------

    async def serve(self, websocket: WebSocket) -> None:
        conn_id = new_connection_id()
        connected_at = _now_ms()
        event = self.connect_event(websocket, conn_id, connected_at)
        status, body = 200, None
        if "$connect" in self._handlers:
            try:
                result = await self._invoke("$connect", event)
            except Exception:
                log.exception("$connect handler raised for %s", conn_id)
                status, body = 502, json.dumps({"message": "Internal server error"})
            else:
                status, body = _integration_status(result)
        if not 200 <= status < 300:
            await websocket.send_denial_response(
                Response(
                    body or json.dumps({"message": "Forbidden"}),
                    status_code=status,
                    media_type="application/json",
                )
            )
            return

        await websocket.accept()
        client_ip = websocket.client.host if websocket.client else "127.0.0.1"
        conn = Connection(
            connection_id=conn_id,
            websocket=websocket,
            connected_at=connected_at,
            source_ip=client_ip,
            user_agent=event["headers"].get("User-Agent", ""),
            last_active_at=connected_at,
        )
        self.connections[conn_id] = conn
        watchdog = asyncio.create_task(self._watchdog(conn))
        code, reason = 1006, "Connection lost"
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code = message.get("code") or 1005
                    reason = message.get("reason") or ""
                    if code == 1005 and "reason" not in message:
                        # uvicorn reports a TCP connection lost without any close
                        # frame as 1005 with no reason; that is 1006, not a close
                        # frame without a status code.
                        code, reason = 1006, "Connection lost"
                    break
                conn.last_active_at = _now_ms()
                try:
                    await self._on_message(conn, message)
                except Exception:  # one bad frame never ends the connection
                    log.exception("could not route a frame on %s", conn_id)
                    await self._send_gateway_error(conn, "Internal server error")
        except Exception:  # a broken socket ends the connection, never the process
            log.exception("receive loop failed for %s", conn_id)
        finally:
            watchdog.cancel()
            self.connections.pop(conn_id, None)
            if conn.closing is not None:
                code, reason = conn.closing
            elif code == 1005 and not reason:
                reason = "Client-side close frame status not set"
            await asyncio.gather(*conn.tasks, return_exceptions=True)
            if "$disconnect" in self._handlers:
                try:
                    await self._invoke("$disconnect", self.disconnect_event(conn, code, reason))
                except Exception:
                    log.exception("$disconnect handler raised for %s", conn_id)

    async def _on_message(self, conn: Connection, message: dict[str, Any]) -> None:
        if message.get("text") is not None:
            text: str = message["text"]
            size = len(text.encode("utf-8"))
            body, is_b64 = text, False
        else:
            data: bytes = message.get("bytes") or b""
            size = len(data)
            body, is_b64 = base64.b64encode(data).decode(), True
        if size > self.settings.max_message_bytes:
            await self.close(conn.connection_id, CLOSE_MESSAGE_TOO_BIG, "Message too big")
            return
        route_key = self.select_route(body) if not is_b64 else "$default"
        if route_key not in self._handlers:
            await self._send_gateway_error(conn, "Forbidden")
            return
        # API Gateway invokes the integration per message, concurrently.
        task = asyncio.create_task(self._dispatch(conn, route_key, body, is_b64))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _dispatch(self, conn: Connection, route_key: str, body: str, is_b64: bool) -> None:
        event = self.message_event(conn, route_key, body, is_b64)
        handler = self._handlers[route_key]

        def invoke_unless_closed() -> Any:
            # Lambda would have taken this frame at once; here it may have waited for a
            # worker thread. If the connection was closed meanwhile (@connections
            # DELETE), it is dropped: nothing runs for a connection that is gone.
            if conn.closing is not None:
                return None
            return handler(event, self._context_factory())

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, invoke_unless_closed)
        except Exception:
            log.exception("%s handler raised for %s", route_key, conn.connection_id)
            await self._send_gateway_error(
                conn, "Internal server error", event["requestContext"]["requestId"]
            )

    async def _send_gateway_error(
        self, conn: Connection, message: str, request_id: str | None = None
    ) -> None:
        payload = {
            "message": message,
            "connectionId": conn.connection_id,
            "requestId": request_id or _request_id(),
        }
        with contextlib.suppress(Exception):
            await self._send(conn, json.dumps(payload).encode())

    async def _watchdog(self, conn: Connection) -> None:
        limit_at = conn.connected_at / 1000 + self.settings.max_connection_seconds
        while True:
            idle_at = conn.last_active_at / 1000 + self.settings.idle_timeout_seconds
            now = time.time()
            if now >= limit_at or now >= idle_at:
                await self.close(conn.connection_id, CLOSE_GOING_AWAY, "Going away")
                return
            await asyncio.sleep(min(limit_at, idle_at) - now)

    async def _send(self, conn: Connection, data: bytes) -> None:
        async with conn.send_lock:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                await conn.websocket.send_bytes(data)
            else:
                await conn.websocket.send_text(text)

    async def close(self, conn_id: str, code: int = 1000, reason: str = "") -> bool:
        conn = self.connections.get(conn_id)
        if conn is None:
            return False
        if conn.closing is None:
            conn.closing = (code, reason)
            with contextlib.suppress(Exception):
                await conn.websocket.close(code=code, reason=reason)
        return True

    # -- @connections management API ---------------------------------------

    def fail_next(self, method: str, times: int = 1) -> None:
        """Answer the next `times` @connections calls of `method` (POST, GET, DELETE) with 500
        InternalServerErrorException, changing nothing (a test's fault between commit and effect).
        The app's client retries 5xx itself: to fail one app call, use `failing` or enough times."""
        self._faults[method.upper()] = times

    @contextlib.contextmanager
    def failing(self, method: str) -> Iterator[None]:
        """Every @connections call of `method` fails with 500 while the block runs (an outage)."""
        self._faults[method.upper()] = None
        try:
            yield
        finally:
            self._faults.pop(method.upper(), None)

    def _injected(self, method: str) -> Response | None:
        if method not in self._faults:
            return None
        left = self._faults[method]
        if left is not None:
            if left <= 1:
                self._faults.pop(method, None)
            else:
                self._faults[method] = left - 1
        return _management_error(500, "InternalServerErrorException", "injected failure")

    async def _unsigned(self, request: Request, body: bytes = b"") -> Response | None:
        """403 unless the request is SigV4-signed with the local credentials (devstack/sigv4.py)."""
        from devstack.sigv4 import SignatureError, verify

        scope = request.scope
        url = f"http://{request.headers.get('host', '')}{scope['raw_path'].decode('latin-1')}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        try:
            verify(
                request.method,
                url,
                {k.lower(): v for k, v in request.headers.items()},
                body,
                self.settings.signing_secrets,
                self.settings.region,
            )
        except SignatureError as exc:
            return _management_error(403, exc.error_type, exc.message)
        return None

    async def post_to_connection(self, request: Request) -> Response:
        data = await request.body()
        refused = await self._unsigned(request, data)
        if refused is not None:
            return refused
        conn = self.connections.get(request.path_params["connection_id"])
        if conn is None or conn.closing is not None:
            return _management_error(410, "GoneException")
        if len(data) > self.settings.max_message_bytes:
            return _management_error(413, "PayloadTooLargeException", "Message too long")
        try:
            await self._send(conn, data)
        except Exception:
            return _management_error(410, "GoneException")
        self.posted += 1  # only touched on the event loop: no lock needed
        return Response(status_code=200, headers=_amzn_headers())

    async def get_connection(self, request: Request) -> Response:
        refused = await self._unsigned(request)
        if refused is not None:
            return refused
        conn = self.connections.get(request.path_params["connection_id"])
        if conn is None or conn.closing is not None:
            return _management_error(410, "GoneException")
        body = {
            "connectedAt": _iso(conn.connected_at),
            "lastActiveAt": _iso(conn.last_active_at),
            "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent},
        }
        return JSONResponse(body, headers=_amzn_headers())

    async def delete_connection(self, request: Request) -> Response:
        refused = await self._unsigned(request) or self._injected("DELETE")
        if refused is not None:
            return refused
        closed = await self.close(request.path_params["connection_id"], 1000, "")
        if not closed:
            return _management_error(410, "GoneException")
        return Response(status_code=204, headers=_amzn_headers())

    def routes(self) -> list[Any]:
        routes: list[Any] = []
        for prefix in ("", "/{stage}"):
            path = prefix + "/@connections/{connection_id}"
            routes += [
                Route(path, self.post_to_connection, methods=["POST"]),
                Route(path, self.get_connection, methods=["GET"]),
                Route(path, self.delete_connection, methods=["DELETE"]),
            ]
        routes.append(WebSocketRoute("/", self.serve))
        routes.append(WebSocketRoute("/{stage}", self.serve))
        return routes


def _integration_status(result: Any) -> tuple[int, str | None]:
    if isinstance(result, dict):
        status = int(result.get("statusCode", 200))
        body = result.get("body")
        return status, body if isinstance(body, str) else None
    return 200, None


def _amzn_headers() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


def _management_error(status: int, error_type: str, message: str | None = None) -> Response:
    headers = _amzn_headers()
    headers["x-amzn-ErrorType"] = error_type
    return JSONResponse({"message": message}, status_code=status, headers=headers)


# Header words whose usual spelling is not plain Title-Case (Sec-WebSocket-Key, not Sec-Websocket-Key).
_HEADER_WORDS = {"websocket": "WebSocket", "www": "WWW", "md5": "MD5", "dnt": "DNT", "te": "TE", "xss": "XSS"}


def _canonical_header(name: str) -> str:
    # API Gateway passes header names as the client sent them; HTTP/1.1 clients
    # send Title-Case, and ASGI lower-cases, so restore the common form.
    return "-".join(_HEADER_WORDS.get(part, part[:1].upper() + part[1:]) for part in name.split("-"))
