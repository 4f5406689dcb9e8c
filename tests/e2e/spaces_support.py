"""Helpers for the spaces scenario tests (tests/e2e/test_spaces*.py).

- `Clients`: opens sohbet_client connections for users and closes them all at the
  end; every frame any of them received is checked against docs/asyncapi.yaml.
- REST helpers over conftest's `http`.
- `no_scan`: fails a test during which any DynamoDB Scan was issued in the process.
- Knobs for the cost tests: paused schedules, a slower listener-count coalescing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from asyncapi_check import validate_server_message
from conftest import http

from chalicelib import media
from devstack.media.chime_api import ChimeMeetingsEmulator
from devstack.media.registry import MediaRegistry
from devstack.stack import LocalStack
from devstack.stats import AWS_CALLS
from sohbet_client import SohbetClient, SohbetError

T = TypeVar("T")
EVENT_TIMEOUT = 5.0


def uid(prefix: str = "u") -> str:
    """A user or title token unique to this run (users are global: follows, blocks, suspensions)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def iso(delta: timedelta) -> str:
    return (datetime.now(tz=UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- no Scan, ever -------------------------------------------------------------

_SCANS: list[str] = []


class _ScanAlarm(collections.Counter):  # type: ignore[type-arg]
    """AWS_CALLS.calls, remembering every Scan even when someone resets the counter."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if key == "dynamodb:Scan":
            _SCANS.append(threading.current_thread().name)
        super().__setitem__(key, value)


def _install_scan_alarm() -> None:
    # The counter's hook sits on every botocore client the process creates
    # (devstack.stats.install_call_counter); this sees what it counts.
    with AWS_CALLS._lock:
        if not isinstance(AWS_CALLS.calls, _ScanAlarm):
            AWS_CALLS.calls = _ScanAlarm(AWS_CALLS.calls)


@pytest.fixture(autouse=True)
def no_scan(stack: Any) -> Iterator[None]:
    """Principle 1: no request path ever scans a table. Fails the test that caused one.

    Also ends the spaces the test created and their host never joined (a host who
    joined and left ends theirs after the grace period): the sweep reads every live
    space each run, so spaces left live would slow down every later test.
    """
    _install_scan_alarm()
    before = len(_SCANS)
    yield
    while _CREATED:
        space_id, creator = _CREATED.pop()
        http(stack, "POST", f"/spaces/{space_id}/end", token=token(stack, creator))
    assert _SCANS[before:] == [], f"dynamodb:Scan issued during this test (threads {_SCANS[before:]})"


# -- REST ----------------------------------------------------------------------

_CREATED: list[tuple[str, str]] = []


def token(stack: Any, user: str) -> str:
    return stack.mint_token(user)


def create_space(stack: Any, host: str, title: str | None = None, **fields: Any) -> dict[str, Any]:
    body = {"title": title or f"space of {host}", **fields}
    status, space = http(stack, "POST", "/spaces", body, token=token(stack, host))
    assert status == 201, (status, space)
    _CREATED.append((space["id"], host))
    return space


def get_space(stack: Any, space_id: str) -> dict[str, Any]:
    status, space = http(stack, "GET", f"/spaces/{space_id}", token=token(stack, "viewer"))
    assert status == 200, (status, space)
    return space


def roles(space: dict[str, Any]) -> dict[str, str]:
    """{user_id: role} of everyone on stage, from a GET /spaces/{id} body."""
    return {e["user_id"]: e["role"] for e in space["stage"]}


def entry(space: dict[str, Any], user: str) -> dict[str, Any] | None:
    return next((e for e in space["stage"] if e["user_id"] == user), None)


# -- media ---------------------------------------------------------------------


def local_media() -> MediaRegistry:
    """What the embedded media server (the stack's Chime) holds: meetings and attendees."""
    return LocalStack.running().media


def chime() -> ChimeMeetingsEmulator:
    """The stack's Chime API: fault injection (`fail_next`, `failing`) and the calls it served."""
    return LocalStack.running().chime


@contextlib.contextmanager
def chime_rules(**changes: Any) -> Iterator[None]:
    """Switch Chime's request rules on for a block, e.g. chime_rules(rate_limits=True, rates={...})."""
    emulator = chime()
    saved = emulator.rules
    emulator.rules = dataclasses.replace(saved, **changes)
    emulator.reset()  # fresh rate-limit buckets
    try:
        yield
    finally:
        emulator.rules = saved


def audio(meeting_id: str, user: str) -> str | None:
    """The Audio capability of `user`'s attendee at the media service; None: no attendee."""
    external = media.external_user_id(user)
    for attendee in local_media().attendees(meeting_id).values():
        if attendee.external_user_id == external:
            return attendee.audio
    return None


# -- WebSocket clients ---------------------------------------------------------


class Client(SohbetClient):
    user: str

    def events(self, name: str | None = None, since: int = 0, **match: Any) -> list[dict[str, Any]]:
        """Events received so far (from index `since` of `received`) named `name` with these fields."""
        return [
            f
            for f in self.received[since:]
            if f.get("type") == "event"
            and (name is None or f.get("event") == name)
            and all(f.get(k) == v for k, v in match.items())
        ]

    async def event(
        self, name: str, since: int = 0, timeout: float = EVENT_TIMEOUT, **match: Any
    ) -> dict[str, Any]:
        """The first event named `name` with these fields received from index `since` on (waits for it)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name, since, **match)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [f.get("event") for f in self.received[since:] if f.get("type") == "event"]
                raise AssertionError(f"{self.user}: no {name} event matching {match}; got {seen}")
            await asyncio.sleep(0.01)

    @property
    def mark(self) -> int:
        return len(self.received)

    def broadcast_seqs(self, space_id: str) -> list[int]:
        return [f["seq"] for f in self.events(space_id=space_id) if "seq" in f]


class Clients:
    """Connections opened during one test; closed (and their frames checked) at the end."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.all: list[Client] = []

    async def open(self, user: str) -> Client:
        client = Client(self.stack.ws_url, token(self.stack, user))
        client.user = user
        await client.connect()
        self.all.append(client)
        return client

    async def join(self, user: str, space_id: str) -> tuple[Client, dict[str, Any]]:
        if (space_id, user) in _CREATED:
            _CREATED.remove((space_id, user))
        client = await self.open(user)
        return client, await client.send("space.join", space_id=space_id)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.all), return_exceptions=True)

    def check_frames(self) -> None:
        for client in self.all:
            assert client.invalid_frames == [], (client.user, client.invalid_frames[:3])
            for frame in client.received:
                validate_server_message(frame)

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.close()
        if exc_type is None:
            self.check_frames()


def run(stack: Any, scenario: Callable[[Clients], Awaitable[T]]) -> T:
    """Run an async scenario with a fresh set of clients (closed and checked afterwards)."""

    async def main() -> T:
        async with Clients(stack) as clients:
            return await scenario(clients)

    return asyncio.run(main())


async def refused(call: Awaitable[Any], code: str) -> SohbetError:
    """Await a command that must fail with `code`."""
    try:
        data = await call
    except SohbetError as err:
        assert err.code == code, f"expected {code}, got {err.code}: {err.message}"
        return err
    raise AssertionError(f"expected {code}, got a reply {data}")


async def alive(client: Client) -> None:
    """The connection still answers."""
    pong = await client.send("ping")
    assert pong["user_id"] == client.user


async def until(predicate: Callable[[], Any], timeout: float = EVENT_TIMEOUT, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def until_rest(stack: Any, space_id: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict:
    """Poll GET /spaces/{id} until `check(space)` holds."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        space = await asyncio.to_thread(get_space, stack, space_id)
        if check(space):
            return space
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {space}")
        await asyncio.sleep(0.05)


def assert_consecutive(client: Client, space_id: str, start: int | None = None) -> list[int]:
    """Broadcasts a continuously present member got: numbered one by one, none missed, none twice.

    Posts to one connection may overtake each other (API Gateway promises no order either), so
    the numbers are compared as a set; a client orders them by seq.
    """
    received = client.broadcast_seqs(space_id)
    seqs = sorted(received)
    if seqs:
        first = seqs[0] if start is None else start + 1
        assert seqs == list(range(first, first + len(seqs))), (client.user, start, received)
    return seqs


# -- knobs for the cost tests ----------------------------------------------------


@contextlib.contextmanager
def listener_count_interval(seconds: float) -> Iterator[None]:
    """Coalesce listener counts over `seconds` (so a join's own cost can be measured without them)."""
    from chalicelib.config import get_settings

    name = "LISTENER_COUNT_INTERVAL_SECONDS"
    old = os.environ.get(name)
    os.environ[name] = str(seconds)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
        get_settings.cache_clear()


@contextlib.contextmanager
def schedules_paused(stack: Any) -> Iterator[None]:
    """Stop the scheduled sweep for a while: its queries would be counted with what is measured."""
    scheduler = stack.scheduler
    jobs, scheduler.jobs = scheduler.jobs, []
    time.sleep(0.5)  # let a sweep that already started finish
    try:
        yield
    finally:
        scheduler.jobs = jobs


class LoopThread:
    """An event loop in a thread, for connections that outlive one test (a module's shared room)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="spaces-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
