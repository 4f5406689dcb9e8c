"""Chime's rules through the whole local stack: the app's own ChimeMediaAdapter against the emulator.

The emulator alone is tested in test_media_chime_api.py; here the app's joins meet it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Clients, chime, chime_rules, create_space, local_media, uid

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here


async def test_the_apps_chime_calls_are_served_by_the_stack(stack: Any, clients: Clients) -> None:
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    before = chime().count("CreateAttendee")
    _, snap = await clients.join(host_id, space["id"])
    meeting_id = snap["media"]["Meeting"]["MeetingId"]
    assert chime().count("CreateAttendee") == before + 1
    attendee = local_media().attendee_by_token(snap["media"]["Attendee"]["JoinToken"])
    assert attendee is not None and attendee.meeting_id == meeting_id
    assert stack.media_events.of_type("chime:MeetingStarted", meeting_id)


async def test_with_rate_limits_on_a_throttled_join_is_retried_by_botocore(
    stack: Any, clients: Clients
) -> None:
    """What LOCAL_CHIME_RATE_LIMITS=1 does to the app: CreateAttendee past its rate answers 429
    ThrottlingException and the app's client retries it, so a small burst still joins, with
    extra calls and backoff."""
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    await clients.join(host_id, space["id"])
    listeners = [await clients.open(uid("l")) for _ in range(2)]
    with chime_rules(rate_limits=True, rates={"CreateAttendee": 1}):
        # botocore's throttling backoff (1 s base, 5 attempts) can take ~15 s at worst
        joined = await asyncio.gather(
            *(c.send("space.join", space_id=space["id"], timeout=20) for c in listeners)
        )
        attempts = chime().count("CreateAttendee")
    assert [snap["role"] for snap in joined] == ["listener", "listener"]
    assert attempts >= 3  # the second join was throttled at least once, then retried
