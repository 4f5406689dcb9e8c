"""Helpers for the safety and admin tests: people on real WebSockets, spaces, cases."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import websockets
from conftest import http

TIMEOUT = 5.0


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in its own event loop (pytest sees the fixtures it asks for)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def uid(name: str) -> str:
    """A user id no other test uses (the stack lives for the whole session)."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


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


def live_space(stack: Any, host: str, title: str = "safety") -> str:
    status, body = http(stack, "POST", "/spaces", {"title": title}, token=stack.mint_token(host))
    assert status == 201, body
    return str(body["id"])


async def join_all(space_id: str, *persons: Person) -> dict[str, dict[str, Any]]:
    return {p.user_id: await p.ok("space.join", space_id=space_id) for p in persons}


async def bring_on_stage(host: Person, speaker: Person, space_id: str) -> None:
    await speaker.ok("hand.raise", space_id=space_id)
    await host.ok("request.approve", space_id=space_id, user_id=speaker.user_id)
    await speaker.event("stage.changed", user_id=speaker.user_id)


def admin_token(stack: Any, name: str = "root") -> str:
    return str(stack.mint_token(name, ["admins"]))


def case_of(stack: Any, target_type: str, target_id: str, status: str = "open") -> dict[str, Any] | None:
    code, body = http(
        stack,
        "GET",
        f"/admin/cases?target_type={target_type}&target_id={target_id}&status={status}",
        token=admin_token(stack),
    )
    assert code == 200, body
    return body["data"][0] if body["data"] else None


def wait_for_case(
    stack: Any, target_type: str, target_id: str, reports: int, timeout: float = 8.0
) -> dict[str, Any]:
    """The target's open case once triage has counted `reports` reports into it."""
    deadline = time.monotonic() + timeout
    while True:
        case = case_of(stack, target_type, target_id)
        if case is not None and case["report_count"] >= reports:
            return case
        if time.monotonic() > deadline:
            raise AssertionError(f"no case with {reports} reports for {target_type}#{target_id}: {case}")
        time.sleep(0.1)


def attendees_of(space_id: str) -> dict[str, Any]:
    """The attendees the media service (the stack's Chime emulator) holds for the space's meeting."""
    from chalicelib import spaces
    from devstack.stack import LocalStack

    meeting_id = spaces.get_space(space_id).meeting_id
    assert meeting_id
    return LocalStack.running().media.attendees(meeting_id)


def has_attendee(space_id: str, user_id: str) -> bool:
    from chalicelib import media

    return any(
        media.user_id_from_external(a.external_user_id) == user_id for a in attendees_of(space_id).values()
    )


# -- the moderation queue, fed directly -------------------------------------


def report_message(
    space: str, reporter: str, target: str | None, category: str = "spam", **extra: Any
) -> dict:
    from chalicelib.clock import now_iso

    report_id = uuid.uuid4().hex
    return {
        "v": 1,
        "report_id": report_id,
        "created_at": now_iso(),
        "reporter_id": reporter,
        "space_id": space,
        "user_id": target,
        "category": category,
        "note": None,
        "snapshot": {"taken_at": now_iso(), "test": True},
        **extra,
    }


def send_reports(stack: Any, bodies: list[str]) -> None:
    sqs = stack.aws.client("sqs")
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=stack.env["MODERATION_QUEUE_URL"],
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])],
        )


def stored_reports(report_ids: list[str]) -> set[str]:
    from chalicelib.models import Report

    return {r.report_id for r in Report.batch_get(report_ids)}
