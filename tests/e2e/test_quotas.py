"""Per-user quotas (chalicelib/quotas.py) and the live space whose host never shows up, end to end.

The session stack runs with quotas out of the way; each test sets the one it checks (the
`settings` fixture changes the environment the in-process app reads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from datetime import timedelta

import pytest
from conftest import Clients, Room, http, iso, stored_space, token, uid

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]


def _create(stack, user: str, **fields) -> tuple[int, dict]:
    return http(stack, "POST", "/spaces", {"title": f"q {user}", **fields}, token=token(stack, user))


def _end_all(stack, user: str, ids: list[str]) -> None:
    for space_id in ids:
        http(stack, "POST", f"/spaces/{space_id}/end", token=token(stack, user))


def test_live_spaces_per_hour(stack, settings) -> None:
    settings(QUOTA_LIVE_SPACES_PER_HOUR="2")
    user = uid("maker")
    made = [_create(stack, user) for _ in range(2)]
    assert [status for status, _ in made] == [201, 201]
    status, body = _create(stack, user)
    assert (status, body["code"]) == (429, "rate_limited"), body
    assert body["data"]["limit"] == 2 and body["data"]["window_seconds"] == 3600
    # the next one fits after half an hour (2 an hour, refilled evenly)
    assert 1_700_000 <= body["data"]["retry_after_ms"] <= 1_800_000
    # scheduled spaces have a quota of their own; other users are not affected
    status, scheduled = _create(stack, user, scheduled_start=iso(timedelta(hours=3)))
    assert status == 201
    other = uid("other")
    status, theirs = _create(stack, other)
    assert status == 201
    _end_all(stack, user, [b["id"] for _, b in made] + [scheduled["id"]])
    _end_all(stack, other, [theirs["id"]])


def test_a_quota_bucket_is_left_to_ttl_once_it_is_full_again(stack, settings) -> None:
    import boto3

    from chalicelib import quotas
    from chalicelib.config import get_settings

    settings(QUOTA_LIVE_SPACES_PER_HOUR="4")
    user = uid("ttl")
    before = time.time()
    status, made = _create(stack, user)
    assert status == 201
    bucket = quotas.QuotaBucket.get(quotas.key(quotas.live_spaces(), user), consistent_read=True)
    # one take of four an hour: tat = now + 15 min; the item may go one hour after the take
    assert before + 3600 < bucket.expires_at <= time.time() + 3600 + 2
    assert bucket.tat / 1000 < bucket.expires_at
    ddb = boto3.client("dynamodb", region_name=get_settings().region)
    described = ddb.describe_time_to_live(TableName=get_settings().users_table)["TimeToLiveDescription"]
    assert (described["TimeToLiveStatus"], described["AttributeName"]) == ("ENABLED", "expires_at")
    _end_all(stack, user, [made["id"]])


def test_racing_creates_never_pass_the_quota(stack, settings) -> None:
    settings(QUOTA_SCHEDULED_SPACES_PER_DAY="3")
    user = uid("racer")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: _create(stack, user, scheduled_start=iso(timedelta(hours=3))), range(8))
        )
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 3 + [429] * 5, results
    assert all(body["code"] == "rate_limited" for status, body in results if status == 429)
    _end_all(stack, user, [body["id"] for status, body in results if status == 201])


async def test_reports_per_hour_over_websocket_and_rest(clients: Clients, stack, settings) -> None:
    settings(QUOTA_REPORTS_PER_HOUR="3")
    room = await Room.open(clients)
    reporter = await room.listener("rep")
    for _ in range(2):
        await reporter.send("report.send", space_id=room.sid, user_id=room.host.user, category="spam")
    status, _ = await asyncio.to_thread(
        http, stack, "POST", "/reports", {"space_id": room.sid, "category": "spam"}, reporter.token
    )
    assert status == 202
    refused = await reporter.call("report.send", space_id=room.sid, user_id=room.host.user, category="spam")
    assert (refused["type"], refused["code"]) == ("error", "rate_limited"), refused
    assert refused["data"]["limit"] == 3
    status, body = await asyncio.to_thread(
        http, stack, "POST", "/reports", {"space_id": room.sid, "category": "spam"}, reporter.token
    )
    assert (status, body["code"]) == (429, "rate_limited")
    await reporter.alive()


async def test_hand_toggles_per_minute(clients: Clients, stack, settings) -> None:
    settings(QUOTA_HAND_TOGGLES_PER_MINUTE="4")
    room = await Room.open(clients)
    waver = await room.listener("wave")
    for action in ("hand.raise", "hand.lower", "hand.raise", "hand.lower"):
        await waver.send(action, space_id=room.sid)
    refused = await waver.call("hand.raise", space_id=room.sid)
    assert (refused["type"], refused["code"]) == ("error", "rate_limited"), refused
    assert 0 < refused["data"]["retry_after_ms"] <= 15_000
    # nothing changed: the hosts heard of no fifth toggle, and the hand is still down
    await asyncio.sleep(0.2)
    assert len(room.host.events("hand.raised", user_id=waver.user)) == 2
    assert len(room.host.events("hand.lowered", user_id=waver.user)) == 2
    again = await waver.call("hand.lower", space_id=room.sid)
    assert (again["type"], again["code"]) == ("error", "conflict"), again  # not raised
    await waver.alive()


async def test_a_live_space_whose_host_never_joins_ends(clients: Clients, stack, settings) -> None:
    settings(HOST_NO_SHOW_SECONDS="1")
    host = uid("absent")
    status, space = await asyncio.to_thread(_create, stack, host)
    assert status == 201
    listener, _ = await clients.join(uid("l"), space["id"])
    ended = await listener.event("space.ended", timeout=6)
    assert ended["reason"] == "host_no_show"
    assert stored_space(space["id"]).ended_reason == "host_no_show"


async def test_a_host_who_joins_in_time_keeps_the_space(clients: Clients, stack, settings) -> None:
    settings(HOST_NO_SHOW_SECONDS="1")
    room = await Room.open(clients)
    listener = await room.listener()
    await asyncio.sleep(2.5)  # past the no-show deadline, with sweeps every 0.5 s
    assert stored_space(room.sid).state == "live"
    assert not room.host.events("host.back") and not listener.events("space.ended")


async def test_a_started_scheduled_space_waits_for_its_host_too(clients: Clients, stack, settings) -> None:
    settings(HOST_NO_SHOW_SECONDS="1")
    host = uid("absent")
    status, space = await asyncio.to_thread(_create, stack, host, scheduled_start=iso(timedelta(hours=1)))
    assert status == 201
    status, _ = await asyncio.to_thread(
        http, stack, "POST", f"/spaces/{space['id']}/start", None, token(stack, host)
    )
    assert status == 200
    listener, _ = await clients.join(uid("l"), space["id"])
    assert (await listener.event("space.ended", timeout=6))["reason"] == "host_no_show"
