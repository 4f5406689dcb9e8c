"""Acceptance: three listeners report a speaker; an admin suspends the speaker; it takes effect live."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import (
    Clients,
    admin_token,
    bring_on_stage,
    has_attendee,
    http,
    join_all,
    live_space,
    uid,
    wait_for_case,
)
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e


async def test_reported_speaker_is_suspended_live(clients: Clients, stack) -> None:
    host, speaker = uid("hana"), uid("sam")
    listeners = [uid(f"lis{i}") for i in range(3)]
    space = live_space(stack, host, "Town hall")
    admin = admin_token(stack, "root")
    h, s, *ls = await clients.people(host, speaker, *listeners)
    await join_all(space, h, s, *ls)
    await bring_on_stage(h, s, space)
    assert has_attendee(space, speaker)

    # Given three listeners report the speaker (harassment alone would be "normal")
    for listener in ls:
        reply = await listener.send("report.send", space_id=space, user_id=speaker, category="harassment")
        assert reply["report_id"]

    # Then triage puts the case at high priority, first in the admin's priority view
    case = await asyncio.to_thread(wait_for_case, stack, "user", speaker, 3)
    assert (case["priority"], case["reporter_count"]) == ("high", 3)
    status, page = await asyncio.to_thread(
        http, stack, "GET", "/admin/cases?sort=priority&limit=100", None, admin
    )
    assert status == 200
    assert case["id"] in [c["id"] for c in page["data"] if c["priority"] == "high"]

    # When the admin suspends the speaker
    closed = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        await s.wait_closed()
        closed.set_result(time.perf_counter())

    watcher = asyncio.create_task(watch())
    started = time.perf_counter()
    status, body = await asyncio.to_thread(
        http,
        stack,
        "POST",
        f"/admin/cases/{case['id']}/actions",
        {"action": "suspend", "reason": "targeted harassment", "duration_seconds": 86400},
        admin,
    )
    assert status == 200, body
    closed_at = await asyncio.wait_for(closed, 5)
    await watcher
    ms = (closed_at - started) * 1000
    print(f"suspend→close: {ms:.1f} ms")

    # Then the speaker's socket is closed, their attendee is gone and the stage moved on
    assert s.closed_code is not None
    assert not has_attendee(space, speaker)
    changed = await h.event("stage.changed", user_id=speaker, reason="suspended")
    assert speaker not in {e["user_id"] for e in changed["stage"]}
    assert body["case"]["status"] == "closed" and body["case"]["resolution"] == "suspend"
    await h.send("space.sync", space_id=space)  # the space goes on for everyone else
    await clients.close()

    # And a reconnect with a fresh token is refused at $connect
    fresh = stack.mint_token(speaker)
    with pytest.raises(InvalidStatus) as refused:
        await clients.open(speaker, token=fresh)
    assert refused.value.response.status_code == 403
    status, audit = http(stack, "GET", f"/admin/audit?target_type=user&target_id={speaker}", token=admin)
    assert [a["action"] for a in audit["data"]] == ["suspend"]
