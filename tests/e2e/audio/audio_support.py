"""Helpers for the audio tests: meetings and attendees on the embedded media server, WHIP peers, polling."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.media.registry import Attendee, Meeting
from devstack.media.whip_client import WhipPeer

# The space-level audio tests reuse the end-to-end tests' helpers (spaces_support).
_E2E = str(Path(__file__).resolve().parents[1])
if _E2E not in sys.path:
    sys.path.append(_E2E)

TIMEOUT = 5.0
AUDIO = {"SendReceive", "Send", "Receive", "None"}


def signaling_url(stack: Any, meeting_id: str) -> str:
    return f"{stack.base_url}/media/whip/{meeting_id}"


def meeting(stack: Any, primary: Meeting | None = None) -> Meeting:
    """A meeting straight in the registry (as the Chime API would create it)."""
    return stack.media.create_meeting(
        client_request_token=uuid.uuid4().hex,
        media_region="us-east-1",
        external_meeting_id=f"test-{uuid.uuid4().hex[:8]}",
        primary_meeting_id=primary.meeting_id if primary else None,
    )


def attendee(stack: Any, meeting: Meeting, audio: str = "SendReceive") -> Attendee:
    assert audio in AUDIO
    caps = {"Audio": audio, "Video": "None", "Content": "None"}
    return stack.media.create_attendee(meeting.meeting_id, f"u:{uuid.uuid4().hex[:8]}", caps)


def set_audio(stack: Any, who: Attendee, audio: str) -> None:
    stack.media.update_capabilities(
        who.meeting_id, who.attendee_id, {"Audio": audio, "Video": "None", "Content": "None"}
    )


async def connect(stack: Any, who: Attendee, tone: float | None = None) -> WhipPeer:
    """A WHIP peer joined as `who` (a microphone playing `tone`, or receive-only)."""
    peer = WhipPeer(stack.base_url, signaling_url(stack, who.meeting_id), who.join_token, tone)
    response = await peer.join()
    assert response.status == 201, (response.status, response.body)
    return peer


async def until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> float:
    """Poll `predicate` until true; returns the seconds it took. Fails with `what` on timeout."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def stays(predicate: Callable[[], Any], seconds: float, what: str = "") -> None:
    """`predicate` holds at every poll for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert predicate(), f"no longer true: {what or predicate}"
        await asyncio.sleep(0.05)


async def close_all(*peers: WhipPeer) -> None:
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
