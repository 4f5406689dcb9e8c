"""Legacy: the safety helpers moved to tests/e2e/conftest.py.

Kept so that tests written against the old helpers still run: the same names, re-exported, plus
the old raw-socket `Person`, `people`, `sync`, `join_all` and `bring_on_stage` (new tests are
`async def`, take `clients` and use `await clients.people(...)`; conftest's `join_all` and
`bring_on_stage` take its clients). Delete this module once no test imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import websockets
from conftest import (  # noqa: F401  (re-exported under their old names)
    TIMEOUT,
    admin_token,
    attendees_of,
    case_of,
    has_attendee,
    live_space,
    report_message,
    send_reports,
    stored_reports,
    uid,
    wait_for_case,
)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (pytest sees the fixtures it asks for)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class Person:
    """One user on one WebSocket: commands wait for their reply; events are kept in order."""

    _refs = itertools.count()

    def __init__(self, stack: Any, user_id: str, ws: Any) -> None:
        self.stack = stack
        self.user_id = user_id
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.token = stack.mint_token(user_id)

    async def call(self, action: str, **fields: Any) -> dict[str, Any]:
        """Send a command; the reply or error frame with its ref (events meanwhile are kept)."""
        ref = f"r{next(self._refs)}"
        await self.ws.send(json.dumps({"action": action, "ref": ref, **fields}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
            if frame.get("type") == "event":
                self.events.append(frame)
            elif frame.get("ref") == ref:
                return frame

    async def ok(self, action: str, **fields: Any) -> dict[str, Any]:
        frame = await self.call(action, **fields)
        assert frame["type"] == "reply", frame
        return dict(frame["data"])

    async def event(self, name: str, timeout: float = TIMEOUT, **match: Any) -> dict[str, Any]:
        """The first event called `name` (with these fields), received or still to come."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
                    self.events.remove(e)
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.user_id}: no {name} {match}; got {[e['event'] for e in self.events]}"
                )
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                continue
            if frame.get("type") == "event":
                self.events.append(frame)

    async def drain(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Whatever arrives in the next moment (to check that something did NOT arrive)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except TimeoutError:
                break
            if frame.get("type") == "event":
                self.events.append(frame)
        return self.events


@contextlib.asynccontextmanager
async def people(stack: Any, *user_ids: str) -> AsyncIterator[list[Person]]:
    async with contextlib.AsyncExitStack() as stack_of_sockets:
        found = []
        for user_id in user_ids:
            token = stack.mint_token(user_id)
            ws = await stack_of_sockets.enter_async_context(
                websockets.connect(f"{stack.ws_url}?token={token}", open_timeout=TIMEOUT)
            )
            found.append(Person(stack, user_id, ws))
        yield found


async def join_all(space_id: str, *persons: Person) -> dict[str, dict[str, Any]]:
    return {p.user_id: await p.ok("space.join", space_id=space_id) for p in persons}


async def bring_on_stage(host: Person, speaker: Person, space_id: str) -> None:
    await speaker.ok("hand.raise", space_id=space_id)
    await host.ok("request.approve", space_id=space_id, user_id=speaker.user_id)
    await speaker.event("stage.changed", user_id=speaker.user_id)
