"""Admin actions are carried out, always: a fault between the commit and the effect leaves the
effect pending (recorded with the action), and the sweep or a repeated request finishes it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import (
    Clients,
    Room,
    admin_token,
    chime,
    gateway,
    has_attendee,
    http,
    local_media,
    report_message,
    schedules_paused,
    send_reports,
    stored_member,
    stored_space,
    uid,
    until,
    wait_for_case,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


def _case_about(stack: Any, space_id: str, user: str | None) -> dict[str, Any]:
    send_reports(stack, [json.dumps(report_message(space_id, uid("rep"), user))])
    return wait_for_case(stack, "user" if user else "space", user or space_id, 1)


def _act(stack: Any, case_id: str, body: dict[str, Any]) -> tuple[int, Any]:
    return http(stack, "POST", f"/admin/cases/{case_id}/actions", body, token=admin_token(stack))


def _pending(action_id: str) -> bool:
    from chalicelib.admin import effects

    return effects.find(action_id) is not None


async def test_a_suspension_whose_disconnect_fails_is_finished_by_the_sweep(clients: Clients, stack) -> None:
    room = await Room.open(clients)
    target = await room.listener("bad")
    case = await asyncio.to_thread(_case_about, stack, room.sid, target.user)
    body = {"action": "suspend", "reason": "raid", "duration_seconds": 600}
    with gateway().failing("DELETE"):  # API Gateway's @connections DELETE is down
        status, answer = await asyncio.to_thread(_act, stack, case["id"], body)
        assert status == 200, answer
        assert (answer["effect"], answer["case"]["status"]) == ("pending", "closed")
        action_id = answer["action"]["action_id"]
        assert _pending(action_id)
        # out of the space already (that part worked), but the socket is still open
        await until(lambda: not stored_member(room.sid, target.user).present, what="out of the space")
        await asyncio.sleep(1.2)  # sweeps run (every 0.5 s) and fail too
        await target.alive()
        assert _pending(action_id)
    # the outage ends: the next sweep closes the socket and forgets the effect
    await until(
        lambda: target.closed_code is not None, timeout=8, what="the suspended user's socket to close"
    )
    await until(lambda: not _pending(action_id), what="the effect to be done")


async def test_a_removal_whose_attendee_delete_fails_is_finished_by_a_replayed_request(
    clients: Clients, stack
) -> None:
    room = await Room.open(clients)
    target = await room.listener("bad")
    case = await asyncio.to_thread(_case_about, stack, room.sid, target.user)
    body = {"action": "remove_from_space", "reason": "spam", "space_id": room.sid}
    with schedules_paused(stack):  # only the repeated request may finish it here
        with chime().failing("DeleteAttendee"):  # Chime is down between commit and effect
            status, first = await asyncio.to_thread(_act, stack, case["id"], body)
            assert status == 200, first
            assert first["effect"] == "pending"
        await target.event("participant.removed", space_id=room.sid)
        assert stored_member(room.sid, target.user).removed
        assert has_attendee(room.sid, target.user)  # the media seat survived the outage
        assert _pending(first["action"]["action_id"])

        status, again = await asyncio.to_thread(_act, stack, case["id"], body)
        assert status == 200, again
        assert (again["replayed"], again["effect"]) == (True, "done")
        assert again["action"]["action_id"] == first["action"]["action_id"]
        assert not has_attendee(room.sid, target.user)
        assert not _pending(first["action"]["action_id"])


async def test_ending_a_space_whose_meeting_delete_fails_is_finished_by_the_sweep(
    clients: Clients, stack
) -> None:
    room = await Room.open(clients)
    listener = await room.listener()
    case = await asyncio.to_thread(_case_about, stack, room.sid, None)
    with chime().failing("DeleteMeeting"):
        status, answer = await asyncio.to_thread(
            _act, stack, case["id"], {"action": "end_space", "reason": "abuse"}
        )
        assert status == 200, answer
        assert answer["effect"] == "pending"
        await listener.event("space.ended", space_id=room.sid)
        assert stored_space(room.sid).state == "ended"
        assert local_media().meeting_exists(room.meeting_id)
    await until(
        lambda: not local_media().meeting_exists(room.meeting_id), timeout=8, what="the meeting to go"
    )
    await until(lambda: not _pending(answer["action"]["action_id"]), what="the effect to be done")


async def test_an_action_that_goes_through_has_nothing_pending(clients: Clients, stack) -> None:
    room = await Room.open(clients)
    target = await room.listener("bad")
    case = await asyncio.to_thread(_case_about, stack, room.sid, target.user)
    status, answer = await asyncio.to_thread(
        _act, stack, case["id"], {"action": "remove_from_space", "reason": "spam", "space_id": room.sid}
    )
    assert (status, answer["effect"]) == (200, "done")
    assert not has_attendee(room.sid, target.user) and not _pending(answer["action"]["action_id"])
    status, answer = await asyncio.to_thread(_act, stack, case["id"], {"action": "dismiss", "reason": "x"})
    assert status == 409  # closed already
