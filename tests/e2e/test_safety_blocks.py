"""Blocks, end to end: REST to block, real WebSockets to see what it does in a space."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Clients, bring_on_stage, has_attendee, http, join_all, live_space, uid

pytestmark = pytest.mark.e2e


def test_blocking_yourself_is_a_bad_request(stack) -> None:
    me = uid("ada")
    status, body = http(stack, "PUT", f"/me/blocks/{me}", token=stack.mint_token(me))
    assert status == 400
    assert body["code"] == "bad_request"
    status, body = http(stack, "GET", "/me/blocks", token=stack.mint_token(me))
    assert (status, body["data"]) == (200, [])


def test_blocks_are_listed_page_by_page_and_can_be_undone(stack) -> None:
    me = uid("ada")
    token = stack.mint_token(me)
    others = sorted(uid(n) for n in ("bob", "cem", "deniz"))
    for other in others:
        status, body = http(stack, "PUT", f"/me/blocks/{other}", token=token)
        assert status == 200 and body["user_id"] == other
    status, _ = http(stack, "PUT", f"/me/blocks/{others[0]}", token=token)
    assert status == 200  # blocking twice changes nothing

    seen, cursor = [], None
    while True:
        path = "/me/blocks?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = http(stack, "GET", path, token=token)
        assert status == 200 and len(page["data"]) <= 2
        seen += [b["user_id"] for b in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == others

    status, _ = http(stack, "DELETE", f"/me/blocks/{others[1]}", token=token)
    assert status == 204
    status, page = http(stack, "GET", "/me/blocks", token=token)
    assert sorted(b["user_id"] for b in page["data"]) == [others[0], others[2]]
    # follows are another list
    status, page = http(stack, "GET", "/me/follows", token=token)
    assert page["data"] == []


def test_another_users_cursor_is_refused(stack) -> None:
    a, b = uid("ada"), uid("bob")
    for target in (uid("x"), uid("y")):
        http(stack, "PUT", f"/me/blocks/{target}", token=stack.mint_token(a))
    _, page = http(stack, "GET", "/me/blocks?limit=1", token=stack.mint_token(a))
    assert page["next_cursor"]
    status, body = http(stack, "GET", f"/me/blocks?cursor={page['next_cursor']}", token=stack.mint_token(b))
    assert (status, body["code"]) == (400, "bad_request")


async def test_a_blocked_user_cannot_join_and_is_not_told_why(clients: Clients, stack) -> None:
    host, bob, eve = uid("hana"), uid("bob"), uid("eve")
    space = live_space(stack, host)
    http(stack, "PUT", f"/me/blocks/{bob}", token=stack.mint_token(host))
    h, b, e = await clients.people(host, bob, eve)
    await h.send("space.join", space_id=space)
    refused = await b.call("space.join", space_id=space)
    assert refused["type"] == "error" and refused["code"] == "not_allowed"
    assert "block" not in refused["message"].lower()
    assert not has_attendee(space, bob)
    await e.send("space.join", space_id=space)  # others are not affected


async def test_a_present_user_is_removed_at_once_when_the_host_blocks_them(clients: Clients, stack) -> None:
    host, bob = uid("hana"), uid("bob")
    space = live_space(stack, host)
    h, b = await clients.people(host, bob)
    await join_all(space, h, b)
    assert has_attendee(space, bob)
    status, _ = await asyncio.to_thread(http, stack, "PUT", f"/me/blocks/{bob}", None, h.token)
    assert status == 200
    await b.event("participant.removed", space_id=space)
    assert not has_attendee(space, bob)  # the attendee is gone at the media service too
    again = await b.call("space.join", space_id=space)
    assert again["type"] == "error" and again["code"] == "not_allowed"


async def test_a_blocked_speaker_is_taken_off_the_stage_too(clients: Clients, stack) -> None:
    host, bob = uid("hana"), uid("bob")
    space = live_space(stack, host)
    h, b = await clients.people(host, bob)
    await join_all(space, h, b)
    await bring_on_stage(h, b, space)
    await asyncio.to_thread(http, stack, "PUT", f"/me/blocks/{bob}", None, h.token)
    await b.event("participant.removed", space_id=space)
    changed = await h.event("stage.changed", user_id=bob, reason="removed")
    assert bob not in {s["user_id"] for s in changed["stage"]}
    assert not has_attendee(space, bob)


async def test_a_blocked_user_is_removed_when_the_blocker_becomes_cohost(clients: Clients, stack) -> None:
    host, carol, bob = uid("hana"), uid("carol"), uid("bob")
    space = live_space(stack, host)
    h, c, b = await clients.people(host, carol, bob)
    await join_all(space, h, c, b)
    # carol blocks bob as a plain listener: nothing happens to bob yet
    status, _ = await asyncio.to_thread(http, stack, "PUT", f"/me/blocks/{bob}", None, c.token)
    assert status == 200
    await b.send("space.sync", space_id=space)
    assert has_attendee(space, bob)
    await h.send("cohost.add", space_id=space, user_id=carol)
    await b.event("participant.removed", space_id=space)
    assert not has_attendee(space, bob)


async def test_hand_raises_do_not_reach_a_cohost_who_blocks_the_raiser(clients: Clients, stack) -> None:
    """bob stays in the space while he is a co-host (a block never demotes a moderator);
    once back in the audience his raised hand reaches the host but not carol."""
    host, carol, bob = uid("hana"), uid("carol"), uid("bob")
    space = live_space(stack, host)
    h, c, b = await clients.people(host, carol, bob)
    await join_all(space, h, c, b)
    await h.send("cohost.add", space_id=space, user_id=carol)
    await h.send("cohost.add", space_id=space, user_id=bob)
    await asyncio.to_thread(http, stack, "PUT", f"/me/blocks/{bob}", None, c.token)
    await h.send("cohost.remove", space_id=space, user_id=bob)
    await b.send("stage.leave", space_id=space)
    await b.send("hand.raise", space_id=space)
    await h.event("hand.raised", user_id=bob)
    events = await c.drain(0.5)
    assert not [e for e in events if e["event"] == "hand.raised" and e.get("user_id") == bob]
