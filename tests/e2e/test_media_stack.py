"""Chime's rules through the whole local stack: the app's own ChimeMediaAdapter against the emulator.

The emulator alone is tested in test_media_chime_api.py; here the app's joins meet it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Clients, chime, chime_rules, create_space, local_media, refused, uid

from sohbet_client import SohbetError

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


async def test_a_join_throttled_by_chime_answers_rate_limited_never_internal(
    stack: Any, clients: Clients, settings: Any
) -> None:
    """Chime's CreateAttendee is limited to ~10/s per account and Region; here to 1/s, and the pool
    is off (one CreateAttendee per join, the old way). A throttled join is tried twice, not five
    times (a retry storm keeps the rate used up), and answers `rate_limited` (try again), never
    `internal`. https://docs.aws.amazon.com/chime-sdk/latest/dg/quotas-throttling.html"""
    settings(ATTENDEE_POOL_BATCH="0")
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    await clients.join(host_id, space["id"])
    listeners = [await clients.open(uid("l")) for _ in range(4)]
    with chime_rules(rate_limits=True, rates={"CreateAttendee": 1}):
        outcomes = await asyncio.gather(
            *(c.send("space.join", space_id=space["id"], timeout=20) for c in listeners),
            return_exceptions=True,
        )
        attempts = chime().count("CreateAttendee")
    codes = sorted(o.code if isinstance(o, SohbetError) else "ok" for o in outcomes)
    assert "internal" not in codes
    assert "rate_limited" in codes and "ok" in codes, codes
    assert attempts <= 2 * len(listeners)


async def test_a_listener_join_storm_takes_attendees_from_the_pool_within_chimes_rates(
    stack: Any, clients: Clients
) -> None:
    """With Chime's documented rates enforced (10 requests/s per operation), 40 listeners joining
    at once all get in: their attendees come from BatchCreateAttendee batches of up to 100, not one
    CreateAttendee each. https://docs.aws.amazon.com/chime-sdk/latest/APIReference/API_meeting-chime_BatchCreateAttendee.html"""
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    _, host_snap = await clients.join(host_id, space["id"])
    meeting_id = host_snap["media"]["Meeting"]["MeetingId"]
    listeners = [await clients.open(uid("l")) for _ in range(40)]
    with chime_rules(rate_limits=True):
        joined = await asyncio.gather(
            *(c.send("space.join", space_id=space["id"], timeout=20) for c in listeners)
        )
        # this meeting's calls only: on the shared stack, another test's meeting Chime ended may
        # be renewed meanwhile, and its first pool batch filled (seen on a slow machine)
        calls = {
            op: chime().count(op, MeetingId=meeting_id) for op in ("CreateAttendee", "BatchCreateAttendee")
        }
    assert {snap["media"]["Meeting"]["MeetingId"] for snap in joined} == {meeting_id}
    assert len({snap["media"]["Attendee"]["AttendeeId"] for snap in joined}) == 40
    assert calls["CreateAttendee"] == 0 and calls["BatchCreateAttendee"] <= 1, calls
    for snap in joined:
        attendee = local_media().attendee_by_token(snap["media"]["Attendee"]["JoinToken"])
        assert attendee is not None and attendee.audio == "Receive"


async def test_a_full_space_answers_limit_reached(stack: Any, clients: Clients, settings: Any) -> None:
    """Past the replicas a primary may have (MAX_REPLICAS_PER_MEETING), and when Chime refuses a
    replica for the account's quota (LimitExceeded: 4 per primary unless raised), the join is
    refused with `limit_reached`, not `internal`.
    https://docs.aws.amazon.com/chime-sdk/latest/dg/media-replication.html"""
    settings(MEETING_MAX_ATTENDEES="14", MAX_REPLICAS_PER_MEETING="0")  # one listener seat, no replica
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    await clients.join(host_id, space["id"])
    await clients.join(uid("l"), space["id"])
    late = await clients.open(uid("late"))
    await refused(late.send("space.join", space_id=space["id"]), "limit_reached")

    settings(MAX_REPLICAS_PER_MEETING="4")
    registry = local_media()
    saved, registry.max_replicas = registry.max_replicas, 0  # Chime's quota, used up
    try:
        await refused(late.send("space.join", space_id=space["id"]), "limit_reached")
    finally:
        registry.max_replicas = saved
    snap = await late.send("space.join", space_id=space["id"])  # the quota raised: a replica opens
    assert snap["media"]["Meeting"]["PrimaryMeetingId"]


async def test_the_join_storm_bench_runs_before_and_after_on_a_small_room(stack: Any, settings: Any) -> None:
    """`python -m bench.joinstorm` at N = 12 on the session stack, Chime's rates enforced: before
    (one CreateAttendee per join, 5 attempts) every join costs a CreateAttendee; after, none."""
    from bench.__main__ import Stack
    from bench.joinstorm import run_storm, table
    from chalicelib import media

    here = Stack("session", {}, port=stack.port)
    results = {}
    with chime_rules(rate_limits=True):
        settings(ATTENDEE_POOL_BATCH="0", CHIME_MAX_ATTEMPTS="5")
        media.reset_media()  # the Chime client is built with the attempts setting
        try:
            results["before"] = await run_storm(here, 12, budget=60)
        finally:
            settings(ATTENDEE_POOL_BATCH="100", CHIME_MAX_ATTEMPTS="2")
            media.reset_media()
        results["after"] = await run_storm(here, 12, budget=60)
    print("\n" + table(results))
    assert [r.joined for r in results.values()] == [12, 12]
    assert results["before"].app_calls.get("CreateAttendee") == 12
    assert results["after"].app_calls.get("CreateAttendee", 0) == 0
    assert results["after"].served.get("CreateAttendee", 0) == 0
