"""An asyncio client for sohbet's WebSocket protocol (docs/asyncapi.yaml).

One reader task owns the socket's incoming side. Replies and errors go to the
coroutine that sent the command with the same `ref`; events go to a queue read
with `events()` or `next_event()`. Broadcast events carry a per-space `seq`:
the client drops the ones it has already seen and, when it sees a gap, asks
the server for a fresh snapshot with `space.sync`.

When a join reply names a broadcast channel (`data.broadcast`), the client also subscribes to
it on AWS AppSync Events (sohbet_client/broadcast.py): room events of big spaces come that way,
published once by the server, and go through the same seq bookkeeping as the socket's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from sohbet_client.broadcast import BroadcastError, BroadcastLink

__all__ = [
    "BroadcastError",
    "ConnectionClosed",
    "Gap",
    "SohbetClient",
    "SohbetError",
    "describe_reactions",
    "get_token",
    "http_base_url",
    "rest",
    "with_ticket",
    "with_token",
]

log = logging.getLogger("sohbet_client")

Frame = dict[str, Any]
ResyncCallback = Callable[[str, Frame], Awaitable[None] | None]

DEFAULT_TIMEOUT: Final = 10.0
# Replies that carry the space's current seq in data["seq"].
SNAPSHOT_ACTIONS: Final = frozenset({"space.join", "space.sync"})
SUBSCRIBE_ATTEMPTS: Final = 4  # to the broadcast tier, when its socket is busy or lost


class SohbetError(Exception):
    """The server refused a command: an error frame with the command's ref."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = data or {}


class ConnectionClosed(Exception):
    """The socket closed while a command waited for its reply (or before it was sent)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Gap:
    """Broadcast events the client never saw: it expected `expected` and got `got`."""

    space_id: str
    expected: int
    got: int


@dataclass
class _Pending:
    future: asyncio.Future[Frame]
    action: str
    space_id: str | None


def with_token(url: str, token: str) -> str:
    """`url` with `token` set as its query parameter (the WebSocket $connect has no headers to set)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_ticket(url: str, ticket: str) -> str:
    """`url` with a connect ticket as its only credential (any `token` parameter removed)."""
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("token", "ticket")
    ]
    query.append(("ticket", ticket))
    return urlunsplit(parts._replace(query=urlencode(query)))


def http_base_url(ws_url: str) -> str:
    """The REST base URL that goes with a WebSocket URL (same host and port; ws→http, wss→https)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


class SohbetClient:
    """One authenticated WebSocket connection.

    >>> async with SohbetClient("ws://127.0.0.1:8000/", token) as client:
    ...     snapshot = await client.join("sp1")
    ...     event = await client.next_event("stage.changed")

    By default the token never goes in the WebSocket URL (where access logs keep it):
    `connect()` trades it for a single-use ticket at `POST {rest_url}/ws/ticket` and
    connects with `?ticket=`. `rest_url` defaults to the WebSocket URL's host (right
    for the local stack, which serves both; in AWS the REST API has its own URL).
    `auth="token"` puts the token in the URL instead, as before.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        auto_resync: bool = True,
        on_resync: ResyncCallback | None = None,
        open_timeout: float = DEFAULT_TIMEOUT,
        keep_frames: bool = False,
        auth: Literal["ticket", "token"] = "ticket",
        rest_url: str | None = None,
    ) -> None:
        if auth not in ("ticket", "token"):
            raise ValueError("auth must be 'ticket' or 'token'")
        self.url = url
        self.token = token
        self.auth = auth
        self.rest_url = rest_url or http_base_url(url)
        self.timeout = timeout
        self.auto_resync = auto_resync
        self.on_resync = on_resync
        self.open_timeout = open_timeout
        # Every frame received, in order (JSON text frames, parsed).
        self.received: list[Frame] = []
        # Frames that matched no waiting command: errors with an unknown/null ref, API Gateway errors.
        self.unmatched: list[Frame] = []
        # Text that was not a JSON object.
        self.invalid_frames: list[str | bytes] = []
        self.gaps: list[Gap] = []
        self.stale = 0  # broadcast events dropped because their seq was already seen
        self.resyncs: list[tuple[str, Frame]] = []  # (space_id, space.sync reply data) after a gap
        self.last_seq: dict[str, int] = {}
        # Reactions counted per space and emoji, summed over the `reactions` events admitted.
        self.reaction_totals: dict[str, collections.Counter[str]] = {}
        self.closed_code: int | None = None
        self.closed_reason: str | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._refs = itertools.count(1)
        self._events: asyncio.Queue[Frame | None] = asyncio.Queue()  # None: closed
        # Every incoming frame as it came, for next_frame() (protocol tools and tests); None: closed.
        self._frames: asyncio.Queue[Frame | str | bytes | None] | None = (
            asyncio.Queue() if keep_frames else None
        )
        self._resyncing: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        # The broadcast tier: one realtime socket for every space whose join reply named a channel.
        self.broadcast: BroadcastLink | None = None
        self.broadcast_channels: dict[str, str] = {}  # space_id -> channel subscribed (or being)
        self.broadcast_errors: list[tuple[str, BroadcastError]] = []
        self._subscribed: dict[str, asyncio.Future[str]] = {}

    # -- lifecycle ---------------------------------------------------------

    async def connect(self) -> SohbetClient:
        if self._ws is not None:
            raise RuntimeError("already connected")
        if self.token is None:  # no credential at all: see the refusal
            url = self.url
        elif self.auth == "ticket":
            url = with_ticket(self.url, await self.ticket())
        else:
            url = with_token(self.url, self.token)
        self._ws = await ws_connect(url, open_timeout=self.open_timeout)
        self._reader = asyncio.create_task(self._read(self._ws), name="sohbet-client-reader")
        return self

    async def ticket(self) -> str:
        """A fresh single-use connect ticket for this client's token (POST /ws/ticket)."""
        status, body = await rest(self.rest_url, "POST", "/ws/ticket", self.token, timeout=self.open_timeout)
        if status != 201 or not isinstance(body, dict) or not isinstance(body.get("ticket"), str):
            code = body.get("code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else None
            raise SohbetError(str(code or "unauthorized"), str(message or f"POST /ws/ticket: HTTP {status}"))
        return str(body["ticket"])

    async def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Close the socket and wait for the reader to finish; pending commands fail.

        `code=None` sends a close frame without a status code (the server sees 1005).
        """
        if self._ws is not None:
            await self._ws.close(code, reason)  # type: ignore[arg-type]  # None: an empty close frame
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection has closed (from either side) and the reader has finished."""
        if self._reader is not None:
            await self._reader
        if self.broadcast is not None:
            await self.broadcast.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self._closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake, as a lost network would."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def __aenter__(self) -> SohbetClient:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- sending -----------------------------------------------------------

    def next_ref(self) -> str:
        return f"c{next(self._refs)}"

    async def send(self, action: str, /, *, timeout: float | None = None, **fields: Any) -> Frame:
        """Send `{"action": action, "ref": <new>, **fields}` and return the reply's `data`.

        Raises SohbetError on an error frame, asyncio.TimeoutError when no answer
        comes within `timeout` (default: the client's), ConnectionClosed if the
        socket closes first. A field whose value is None is left out.
        """
        message = {"action": action, **{k: v for k, v in fields.items() if v is not None}}
        return await self.request(message, timeout=timeout)

    async def request(self, message: Mapping[str, Any], *, timeout: float | None = None) -> Frame:
        """Send a whole command (a ref is added unless it has one) and return the reply's `data`."""
        answer = await self.answer(message, timeout=timeout)
        if answer.get("type") == "error":
            data = answer.get("data")
            raise SohbetError(
                str(answer.get("code")), str(answer.get("message")), data if isinstance(data, dict) else None
            )
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    async def answer(self, message: Mapping[str, Any], *, timeout: float | None = None) -> Frame:
        """Send a whole command (a ref is added unless it has one) and return its reply or error frame."""
        ws = self._require_open()
        frame = dict(message)
        ref = frame.get("ref")
        if not isinstance(ref, str) or not ref:
            ref = frame["ref"] = self.next_ref()
        if ref in self._pending:
            raise ValueError(f"ref {ref!r} is already waiting for a reply")
        space_id = frame.get("space_id")
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = _Pending(
            future, str(frame.get("action")), space_id if isinstance(space_id, str) else None
        )
        try:
            await ws.send(json.dumps(frame))
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                answer = await future
        except WsConnectionClosed:
            raise self._closed_error() from None
        finally:
            self._pending.pop(ref, None)
        return answer

    async def send_raw(self, message: Mapping[str, Any] | str | bytes | list[str] | list[bytes]) -> None:
        """Send one message as it is (a mapping is JSON-encoded) without waiting for anything.

        A list is sent as one message fragmented into those frames.
        """
        ws = self._require_open()
        payload = json.dumps(dict(message)) if isinstance(message, Mapping) else message
        try:
            await ws.send(payload)
        except WsConnectionClosed:
            raise self._closed_error() from None

    def _require_open(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("not connected; call connect() first")
        if self.closed_code is not None or self._reader is None or self._reader.done():
            raise self._closed_error()
        return self._ws

    def _closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(self.closed_code, self.closed_reason or "")

    # -- receiving ---------------------------------------------------------

    async def events(self) -> AsyncIterator[Frame]:
        """Every event, in arrival order (minus stale broadcasts), until the connection closes."""
        while True:
            item = await self._events.get()
            if item is None:
                self._events.put_nowait(None)  # so that every other reader ends too
                return
            yield item

    async def next_event(
        self,
        name: str | None = None,
        timeout: float = 5.0,
        predicate: Callable[[Frame], bool] | None = None,
    ) -> Frame:
        """The next event named `name` (any, if None) for which `predicate` holds.

        Events that do not match are consumed and dropped (they stay in `received`).
        Raises asyncio.TimeoutError, or ConnectionClosed once the socket has closed.
        """
        async with asyncio.timeout(timeout):
            while True:
                item = await self._events.get()
                if item is None:
                    self._events.put_nowait(None)
                    raise self._closed_error()
                if (name is None or item.get("event") == name) and (predicate is None or predicate(item)):
                    return item

    async def next_frame(self, timeout: float = 5.0) -> Frame | str | bytes:
        """The next incoming frame of any kind, as it came (a JSON object parsed), in arrival order.

        Only with `keep_frames=True`. Raises asyncio.TimeoutError, or ConnectionClosed once closed.
        """
        if self._frames is None:
            raise RuntimeError("next_frame() needs SohbetClient(..., keep_frames=True)")
        async with asyncio.timeout(timeout):
            item = await self._frames.get()
        if item is None:
            self._frames.put_nowait(None)
            raise self._closed_error()
        return item

    def pending_events(self) -> list[Frame]:
        """Take every event queued so far without waiting."""
        out: list[Frame] = []
        while not self._events.empty():
            item = self._events.get_nowait()
            if item is None:
                self._events.put_nowait(None)
                break
            out.append(item)
        return out

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = None
                if self._frames is not None:
                    self._frames.put_nowait(frame if isinstance(frame, dict) else raw)
                if not isinstance(frame, dict):
                    self.invalid_frames.append(raw)
                    continue
                self.received.append(frame)
                try:
                    self._dispatch(frame)
                except Exception:  # a bad frame must not kill the reader
                    log.exception("could not handle frame %r", frame)
        except WsConnectionClosed:
            pass
        finally:
            self.closed_code = ws.close_code if ws.close_code is not None else 1006
            self.closed_reason = ws.close_reason or ""
            error = self._closed_error()
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(error)
            self._events.put_nowait(None)
            if self._frames is not None:
                self._frames.put_nowait(None)

    def _dispatch(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind in ("reply", "error"):
            ref = frame.get("ref")
            pending = self._pending.get(ref) if isinstance(ref, str) else None
            if pending is None or pending.future.done():
                self.unmatched.append(frame)
                return
            if kind == "reply":
                self._note_reply(pending, frame)
            pending.future.set_result(frame)
        elif kind == "event":
            if frame.get("event") in ("participant.removed", "space.ended", "session.replaced"):
                # This socket no longer belongs in the room: leave its channel too.
                self._drop_channel(frame.get("space_id"))
            if self._admit(frame):
                if frame.get("event") == "reactions":
                    self._tally(frame)
                self._events.put_nowait(frame)
        else:  # API Gateway's own {"message", "connectionId", "requestId"}, or something unknown
            self.unmatched.append(frame)

    def _note_reply(self, pending: _Pending, frame: Frame) -> None:
        """Keep the seq bookkeeping in step with join/sync/leave replies (run by the reader, in order)."""
        space_id = pending.space_id
        if space_id is None:
            return
        if pending.action == "space.leave":
            self.last_seq.pop(space_id, None)
            self._drop_channel(space_id)
            return
        data = frame.get("data")
        if (
            pending.action == "space.join"
            and isinstance(data, dict)
            and isinstance(data.get("broadcast"), dict)
        ):
            self._follow_channel(space_id, data["broadcast"])
        seq = data.get("seq") if isinstance(data, dict) else None
        if pending.action in SNAPSHOT_ACTIONS and isinstance(seq, int) and not isinstance(seq, bool):
            # Events newer than the snapshot may have arrived before the reply: never go back.
            self.last_seq[space_id] = max(seq, self.last_seq.get(space_id, seq))

    def _tally(self, frame: Frame) -> None:
        counts = frame.get("counts")
        space_id = frame.get("space_id")
        if isinstance(counts, dict) and isinstance(space_id, str):
            totals = self.reaction_totals.setdefault(space_id, collections.Counter())
            totals.update({k: v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)})

    def _admit(self, frame: Frame) -> bool:
        """Whether an event goes to the application; tracks seq, drops stale ones, notes gaps."""
        space_id, seq = frame.get("space_id"), frame.get("seq")
        if not isinstance(space_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
            return True  # a private event: no seq
        last = self.last_seq.get(space_id)
        if last is not None and seq <= last:
            self.stale += 1
            return False
        self.last_seq[space_id] = seq
        if last is not None and seq > last + 1:
            self.gaps.append(Gap(space_id, last + 1, seq))
            if self.auto_resync and space_id not in self._resyncing:
                self._resyncing.add(space_id)
                task = asyncio.create_task(self._resync(space_id), name=f"sohbet-resync-{space_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return True

    # -- the broadcast tier ------------------------------------------------

    def _follow_channel(self, space_id: str, info: dict[str, Any]) -> None:
        channel, url, host = info.get("channel"), info.get("realtime_url"), info.get("http_host")
        if not all(isinstance(v, str) and v for v in (channel, url, host)) or self.token is None:
            log.warning("unusable broadcast channel in the join reply: %r", info)
            return
        if self.broadcast is None:
            self.broadcast = BroadcastLink(
                str(url),
                str(host),
                self.token,
                self._broadcast_event,
                self.open_timeout,
                self._broadcast_lost,
            )
        self.broadcast_channels[space_id] = str(channel)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read by broadcast_ready, or not
        self._subscribed[space_id] = future
        self._spawn(self._subscribe(space_id, str(channel), future), f"sohbet-subscribe-{space_id}")

    async def _subscribe(self, space_id: str, channel: str, future: asyncio.Future[str]) -> None:
        assert self.broadcast is not None
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            try:
                ident = await self.broadcast.subscribe(channel)
            except (BroadcastError, OSError, TimeoutError, WsConnectionClosed) as exc:
                error = exc if isinstance(exc, BroadcastError) else BroadcastError("Unreachable", repr(exc))
                # A refusal is final; a busy or lost connection is tried again, with backoff.
                if error.error_type in ("Unreachable", "Closed") and attempt < SUBSCRIBE_ATTEMPTS - 1:
                    await asyncio.sleep(0.5 * 2**attempt)
                    continue
                log.warning("could not subscribe to %s: %s", channel, error)
                self.broadcast_errors.append((space_id, error))
                if not future.done():
                    future.set_exception(error)
                return
            if not future.done():
                future.set_result(ident)
            return

    def _broadcast_lost(self) -> None:
        """The realtime socket dropped: subscribe again (a missed event shows as a gap in seq)."""
        if self.closed_code is not None or self._closed:
            return
        for space_id, channel in list(self.broadcast_channels.items()):
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._subscribed[space_id] = future
            self._spawn(self._subscribe(space_id, channel, future), f"sohbet-resubscribe-{space_id}")

    def _drop_channel(self, space_id: Any) -> None:
        channel = self.broadcast_channels.pop(space_id, None) if isinstance(space_id, str) else None
        self._subscribed.pop(space_id, None)
        if channel is not None and self.broadcast is not None:
            self._spawn(self.broadcast.unsubscribe(channel), f"sohbet-unsubscribe-{space_id}")

    async def broadcast_ready(self, space_id: str, timeout: float = 5.0) -> str:
        """Wait until the space's channel is subscribed; its subscription id (BroadcastError if refused)."""
        future = self._subscribed.get(space_id)
        if future is None:
            raise RuntimeError(f"no broadcast channel for {space_id}: its join reply named none")
        async with asyncio.timeout(timeout):
            return await asyncio.shield(future)

    def _broadcast_event(self, frame: Frame) -> None:
        """A room event from the broadcast tier: logged and handled like one from the socket."""
        self.received.append(frame)
        self._dispatch(frame)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resync(self, space_id: str) -> None:
        try:
            data = await self.sync(space_id)
        except (SohbetError, ConnectionClosed, TimeoutError) as exc:
            log.warning("resync of %s failed: %s", space_id, exc)
            return
        finally:
            self._resyncing.discard(space_id)
        self.resyncs.append((space_id, data))
        if self.on_resync is not None:
            result = self.on_resync(space_id, data)
            if inspect.isawaitable(result):
                await result

    # -- commands ----------------------------------------------------------

    async def ping(self) -> Frame:
        return await self.send("ping")

    async def join(self, space_id: str) -> Frame:
        return await self.send("space.join", space_id=space_id)

    async def leave(self, space_id: str) -> Frame:
        return await self.send("space.leave", space_id=space_id)

    async def sync(self, space_id: str) -> Frame:
        return await self.send("space.sync", space_id=space_id)

    async def end(self, space_id: str) -> Frame:
        return await self.send("space.end", space_id=space_id)

    async def raise_hand(self, space_id: str) -> Frame:
        return await self.send("hand.raise", space_id=space_id)

    async def lower_hand(self, space_id: str) -> Frame:
        return await self.send("hand.lower", space_id=space_id)

    async def accept_invite(self, space_id: str) -> Frame:
        return await self.send("invite.accept", space_id=space_id)

    async def decline_invite(self, space_id: str) -> Frame:
        return await self.send("invite.decline", space_id=space_id)

    async def leave_stage(self, space_id: str) -> Frame:
        return await self.send("stage.leave", space_id=space_id)

    async def mute_self(self, space_id: str) -> Frame:
        return await self.send("mic.mute", space_id=space_id)

    async def unmute_self(self, space_id: str) -> Frame:
        return await self.send("mic.unmute", space_id=space_id)

    async def invite_speaker(self, space_id: str, user_id: str) -> Frame:
        return await self.send("speaker.invite", space_id=space_id, user_id=user_id)

    async def approve(self, space_id: str, user_id: str) -> Frame:
        return await self.send("request.approve", space_id=space_id, user_id=user_id)

    async def deny(self, space_id: str, user_id: str) -> Frame:
        return await self.send("request.deny", space_id=space_id, user_id=user_id)

    async def remove_speaker(self, space_id: str, user_id: str) -> Frame:
        return await self.send("speaker.remove", space_id=space_id, user_id=user_id)

    async def mute_speaker(self, space_id: str, user_id: str) -> Frame:
        return await self.send("speaker.mute", space_id=space_id, user_id=user_id)

    async def remove_participant(self, space_id: str, user_id: str) -> Frame:
        return await self.send("participant.remove", space_id=space_id, user_id=user_id)

    async def add_cohost(self, space_id: str, user_id: str) -> Frame:
        return await self.send("cohost.add", space_id=space_id, user_id=user_id)

    async def remove_cohost(self, space_id: str, user_id: str) -> Frame:
        return await self.send("cohost.remove", space_id=space_id, user_id=user_id)

    async def update_settings(self, space_id: str, **settings: Any) -> Frame:
        """`settings.update`: any of speak_policy ("everyone"|"following"|"invited"), handover, title."""
        return await self.send("settings.update", space_id=space_id, **settings)

    async def set_recording(self, space_id: str, on: bool) -> Frame:
        """`recording.set`: the host records the space for replay (everyone is told)."""
        return await self.send("recording.set", space_id=space_id, on=on)

    async def set_captions(self, space_id: str, on: bool) -> Frame:
        """`captions.set`: the host turns live captions on or off."""
        return await self.send("captions.set", space_id=space_id, on=on)

    async def react(self, space_id: str, emoji: str) -> Frame:
        return await self.send("reaction.send", space_id=space_id, emoji=emoji)

    async def report(
        self, space_id: str, category: str, user_id: str | None = None, note: str | None = None
    ) -> Frame:
        return await self.send(
            "report.send", space_id=space_id, category=category, user_id=user_id, note=note
        )


# Convenience method of SohbetClient for each command, and its positional fields after space_id.
COMMAND_METHODS: Final[dict[str, str]] = {
    "ping": "ping",
    "space.join": "join",
    "space.leave": "leave",
    "space.sync": "sync",
    "space.end": "end",
    "hand.raise": "raise_hand",
    "hand.lower": "lower_hand",
    "invite.accept": "accept_invite",
    "invite.decline": "decline_invite",
    "stage.leave": "leave_stage",
    "mic.mute": "mute_self",
    "mic.unmute": "unmute_self",
    "speaker.invite": "invite_speaker",
    "request.approve": "approve",
    "request.deny": "deny",
    "speaker.remove": "remove_speaker",
    "speaker.mute": "mute_speaker",
    "participant.remove": "remove_participant",
    "cohost.add": "add_cohost",
    "cohost.remove": "remove_cohost",
    "settings.update": "update_settings",
    "recording.set": "set_recording",
    "captions.set": "set_captions",
    "reaction.send": "react",
    "report.send": "report",
}


# -- REST ----------------------------------------------------------------------


def describe_reactions(event: Mapping[str, Any]) -> str:
    """A `reactions` event in one line: "🔥 12  👏 3  (bob, cy)"."""
    counts = event.get("counts") or {}
    senders = [r.get("user_id", "?") for r in event.get("recent") or [] if isinstance(r, dict)]
    line = "  ".join(f"{emoji} {n}" for emoji, n in counts.items())
    return f"{line}  ({', '.join(senders)})" if senders else line


def _http(
    base_url: str, method: str, path: str, token: str | None, body: Any, timeout: float
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method.upper())
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


async def rest(
    base_url: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[int, Any]:
    """One REST call: (HTTP status, parsed JSON body or text or None). Does not raise on 4xx/5xx."""
    return await asyncio.to_thread(_http, base_url, method, path, token, body, timeout)


async def get_token(base_url: str, user: str, groups: list[str] | None = None) -> str:
    """A token for `user` from the local stack's identity provider (POST /dev/token; not in production)."""
    payload: dict[str, Any] = {"user": user}
    if groups:
        payload["groups"] = list(groups)
    status, body = await rest(base_url, "POST", "/dev/token", body=payload)
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise RuntimeError(f"POST /dev/token failed: HTTP {status} {body!r}")
    return str(body["token"])
