"""Every space command over real WebSockets: its success path, its events, and every rule's refusal."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncapi_check
import pytest
from conftest import (
    Client,
    Clients,
    Room,
    alive,
    assert_consecutive,
    audio,
    chime,
    create_space,
    entry,
    get_space,
    http,
    local_media,
    refused,
    roles,
    settings_overridden,
    settled,
    token,
    uid,
    until,
    until_rest,
)

from chalicelib import protocol, rules

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

SEND_RECEIVE, RECEIVE = "SendReceive", "Receive"


# -- join, sync, leave -------------------------------------------------------------


async def test_join_gives_role_snapshot_and_media_credentials(stack, clients: Clients) -> None:
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id, "join me")
    sid = space["id"]
    host, snap = await clients.join(host_id, sid)
    assert snap["role"] == "host"
    assert set(snap) >= {"space", "stage", "listener_count", "role", "media", "seq", "hands"}
    assert snap["hands"] == [] and snap["listener_count"] == 0
    assert snap["space"]["id"] == sid and snap["space"]["state"] == "live"
    assert snap["stage"] == [
        {"user_id": host_id, "role": "host", "present": True, "muted": True, "muted_by": "self"}
    ]
    assert set(snap["media"]) == {"Meeting", "Attendee"}
    assert asyncapi_check.errors("MediaCredentials", snap["media"]) == []
    meeting_id = snap["media"]["Meeting"]["MeetingId"]
    # the local stack's media placement: an http SignalingUrl, the embedded server's WHIP endpoint
    assert (
        snap["media"]["Meeting"]["MediaPlacement"]["SignalingUrl"]
        == f"{stack.base_url}/media/whip/{meeting_id}"
    )
    assert snap["media"]["Attendee"]["Capabilities"]["Audio"] == SEND_RECEIVE
    assert snap["media"]["Attendee"]["JoinToken"]
    assert audio(meeting_id, host_id) == SEND_RECEIVE

    listener, lsnap = await clients.join(uid("l"), sid)
    assert lsnap["role"] == "listener" and "hands" not in lsnap
    assert lsnap["listener_count"] == 1 and lsnap["media"]["Meeting"]["MeetingId"] == meeting_id
    assert lsnap["media"]["Attendee"]["Capabilities"]["Audio"] == RECEIVE
    assert audio(meeting_id, listener.user) == RECEIVE
    assert lsnap["media"]["Attendee"]["AttendeeId"] != snap["media"]["Attendee"]["AttendeeId"]

    # The host hears about the audience through a coalesced count, not per join.
    count = await host.event("listeners.count", listener_count=1)
    assert count["participant_count"] == 2 and isinstance(count["seq"], int)
    await until_rest(stack, sid, lambda s: s["participant_count"] == 2, "participant count")

    synced = await listener.send("space.sync", space_id=sid)
    assert synced["role"] == "listener" and "media" not in synced and synced["listener_count"] == 1
    again = await listener.send("space.join", space_id=sid)  # joining twice is harmless
    assert again["role"] == "listener" and again["listener_count"] == 1

    assert await listener.send("space.leave", space_id=sid) == {"left": True}
    assert audio(meeting_id, listener.user) is None  # the attendee is gone with the membership
    assert (await asyncio.to_thread(get_space, stack, sid))["listener_count"] == 0
    await refused(listener.send("space.sync", space_id=sid), "not_allowed")
    assert await listener.send("space.leave", space_id=sid) == {"left": False}
    await host.event("listeners.count", listener_count=0)
    assert_consecutive(host, sid, snap["seq"])


async def test_a_listener_who_leaves_can_come_back(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    listener = await room.listener()
    await listener.send("space.leave", space_id=room.sid)
    snap = await listener.send("space.join", space_id=room.sid)
    assert snap["role"] == "listener" and snap["listener_count"] == 1


# -- hands ---------------------------------------------------------------------------


async def test_raised_hands_go_to_the_hosts_only(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    cohost = await room.cohost()
    asker, bystander = await room.listener("asker"), await room.listener("bystander")
    sid = room.sid

    raised = await asker.send("hand.raise", space_id=sid)
    assert raised["hand_raised_at"]
    for moderator in (room.host, cohost):
        event = await moderator.event("hand.raised", user_id=asker.user)
        assert event["space_id"] == sid and "seq" not in event
    assert (await asker.send("hand.raise", space_id=sid)) == raised  # idempotent
    hands = (await room.host.send("space.sync", space_id=sid))["hands"]
    assert [h["user_id"] for h in hands] == [asker.user]
    assert "hands" not in await bystander.send("space.sync", space_id=sid)

    # A broadcast after the hand went up: once the bystander has it, the hand would have arrived too.
    await asker.send("reaction.send", space_id=sid, emoji="✋")
    await bystander.event("reactions", timeout=REACTIONS_TIMEOUT, counts={"✋": 1})
    assert bystander.events("hand.raised") == [] and asker.events("hand.raised") == []

    await asker.send("hand.lower", space_id=sid)
    await room.host.event("hand.lowered", user_id=asker.user)
    await cohost.event("hand.lowered", user_id=asker.user)
    assert (await room.host.send("space.sync", space_id=sid))["hands"] == []
    await refused(asker.send("hand.lower", space_id=sid), "conflict")

    await asker.send("hand.raise", space_id=sid)
    mark = room.host.mark
    await cohost.send("request.deny", space_id=sid, user_id=asker.user)
    denied = await asker.event("hand.denied")
    assert denied["by"] == cohost.user and "seq" not in denied
    await room.host.event("hand.lowered", since=mark, user_id=asker.user)
    await refused(cohost.send("request.deny", space_id=sid, user_id=asker.user), "conflict")
    await refused(room.host.send("hand.raise", space_id=sid), "conflict")  # already on stage
    assert bystander.events("hand.denied") == [] and bystander.events("hand.lowered") == []
    assert (await room.get())["speaker_ids"] == []


async def test_approving_a_request_brings_the_listener_on_stage_with_a_microphone(
    stack, clients: Clients
) -> None:
    room = await Room.open(clients)
    asker, other = await room.listener("asker"), await room.listener("other")
    sid = room.sid
    await refused(room.host.send("request.approve", space_id=sid, user_id=asker.user), "conflict")
    await asker.send("hand.raise", space_id=sid)
    assert (await room.get())["listener_count"] == 2

    await room.host.send("request.approve", space_id=sid, user_id=asker.user)
    for client in (room.host, asker, other):
        changed = await client.event("stage.changed", reason="request_approved")
        assert changed["user_id"] == asker.user and isinstance(changed["seq"], int)
        assert {e["user_id"]: e["role"] for e in changed["stage"]} == {
            room.host.user: "host",
            asker.user: "speaker",
        }
    assert room.audio(asker) == SEND_RECEIVE
    space = await room.get()
    assert space["speaker_ids"] == [asker.user] and space["listener_count"] == 1
    assert entry(space, asker.user) == {
        "user_id": asker.user,
        "role": "speaker",
        "present": True,
        "muted": True,
        "muted_by": "self",
    }
    assert (await room.host.send("space.sync", space_id=sid))["hands"] == []
    assert (await asker.send("space.sync", space_id=sid))["role"] == "speaker"
    await refused(room.host.send("request.approve", space_id=sid, user_id=asker.user), "conflict")
    await refused(room.host.send("request.approve", space_id=sid, user_id=uid("nobody")), "not_found")


# -- invitations -------------------------------------------------------------------


async def test_invite_then_accept_or_decline(stack, clients: Clients) -> None:
    room = await Room.open(clients, speak_policy="invited")
    yes, no = await room.listener("yes"), await room.listener("no")
    sid = room.sid

    await room.host.send("speaker.invite", space_id=sid, user_id=yes.user)
    invited = await yes.event("speaker.invited")
    assert invited["by"] == room.host.user and "seq" not in invited
    assert no.events("speaker.invited") == []
    assert (await room.get())["invited_user_ids"] == [yes.user]
    assert await yes.send("invite.accept", space_id=sid) == {"role": "speaker"}
    changed = await no.event("stage.changed", reason="invite_accepted")
    assert changed["user_id"] == yes.user
    assert room.audio(yes) == SEND_RECEIVE
    await refused(room.host.send("speaker.invite", space_id=sid, user_id=yes.user), "conflict")
    await refused(yes.send("invite.accept", space_id=sid), "conflict")

    await room.host.send("speaker.invite", space_id=sid, user_id=no.user)
    await no.event("speaker.invited")
    await no.send("invite.decline", space_id=sid)
    declined = await room.host.event("invite.declined")
    assert declined["user_id"] == no.user and "seq" not in declined
    await refused(no.send("invite.accept", space_id=sid), "conflict")
    await refused(no.send("invite.decline", space_id=sid), "conflict")
    await refused(room.host.send("speaker.invite", space_id=sid, user_id=uid("ghost")), "not_found")
    space = await room.get()
    assert roles(space) == {room.host.user: "host", yes.user: "speaker"}
    assert room.audio(no) == RECEIVE


# -- microphones -----------------------------------------------------------------------


async def test_mute_and_unmute_and_a_host_mute_only_the_speaker_lifts(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    speaker, listener = await room.speaker(), await room.listener()
    sid = room.sid

    assert await speaker.send("mic.unmute", space_id=sid) == {"muted": False}
    changed = await listener.event("stage.changed", reason="unmuted", user_id=speaker.user)
    assert entry(changed, speaker.user)["muted"] is False
    assert await speaker.send("mic.mute", space_id=sid) == {"muted": True}
    assert entry(await room.get(), speaker.user)["muted_by"] == "self"
    assert room.audio(speaker) == SEND_RECEIVE  # a self-mute is the client's own business
    await speaker.send("mic.unmute", space_id=sid)

    mark = listener.mark
    await room.host.send("speaker.mute", space_id=sid, user_id=speaker.user)
    changed = await listener.event("stage.changed", since=mark, reason="muted", user_id=speaker.user)
    assert entry(changed, speaker.user)["muted_by"] == "host"
    assert room.audio(speaker) == RECEIVE  # enforced by the media service
    # The host has no way to unmute someone: mic.unmute is about the caller's own microphone.
    await room.host.send("mic.unmute", space_id=sid)
    space = await room.get()
    assert entry(space, speaker.user)["muted"] is True and entry(space, room.host.user)["muted"] is False
    assert room.audio(speaker) == RECEIVE

    await speaker.send("mic.unmute", space_id=sid)
    assert entry(await room.get(), speaker.user) == {
        "user_id": speaker.user,
        "role": "speaker",
        "present": True,
        "muted": False,
        "muted_by": None,
    }
    assert room.audio(speaker) == SEND_RECEIVE
    await refused(listener.send("mic.mute", space_id=sid), "not_allowed")
    await refused(listener.send("mic.unmute", space_id=sid), "not_allowed")
    await refused(room.host.send("speaker.mute", space_id=sid, user_id=listener.user), "conflict")


# -- leaving the stage ------------------------------------------------------------------


async def test_leave_the_stage_or_be_moved_to_the_audience(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    cohost = await room.cohost()
    leaver, moved, listener = await room.speaker(), await room.speaker(), await room.listener()
    sid = room.sid
    assert (await room.get())["listener_count"] == 1

    assert await leaver.send("stage.leave", space_id=sid) == {"role": "listener"}
    await listener.event("stage.changed", reason="left_stage", user_id=leaver.user)
    assert room.audio(leaver) == RECEIVE
    assert (await leaver.send("space.sync", space_id=sid))["role"] == "listener"
    assert (await room.get())["listener_count"] == 2

    await cohost.send("speaker.remove", space_id=sid, user_id=moved.user)
    changed = await moved.event("stage.changed", reason="moved_to_audience", user_id=moved.user)
    assert moved.user not in {e["user_id"] for e in changed["stage"]}
    assert room.audio(moved) == RECEIVE

    await refused(room.host.send("stage.leave", space_id=sid), "not_allowed")  # the host ends instead
    await refused(listener.send("stage.leave", space_id=sid), "conflict")
    await refused(room.host.send("speaker.remove", space_id=sid, user_id=listener.user), "conflict")
    await refused(room.host.send("speaker.remove", space_id=sid, user_id=cohost.user), "conflict")
    assert await cohost.send("stage.leave", space_id=sid) == {"role": "listener"}
    space = await room.get()
    assert roles(space) == {room.host.user: "host"} and space["listener_count"] == 4


# -- removal ---------------------------------------------------------------------------


async def test_a_removed_participant_cannot_come_back(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    cohost = await room.cohost()
    listener, speaker, witness = await room.listener(), await room.speaker(), await room.listener()
    sid = room.sid
    assert (await room.get())["listener_count"] == 2

    await room.host.send("participant.remove", space_id=sid, user_id=listener.user)
    removed = await listener.event("participant.removed")
    assert removed["reason"] == "removed" and "seq" not in removed
    assert room.audio(listener) is None  # its join token died with the attendee
    assert (await room.get())["listener_count"] == 1
    await refused(listener.send("hand.raise", space_id=sid), "not_allowed")
    await refused(listener.send("space.join", space_id=sid), "not_allowed")
    fresh = await clients.open(listener.user)  # a new token and a new connection
    await refused(fresh.send("space.join", space_id=sid), "not_allowed")
    await alive(fresh)

    await cohost.send("participant.remove", space_id=sid, user_id=speaker.user)
    await witness.event("stage.changed", reason="removed", user_id=speaker.user)
    await speaker.event("participant.removed")
    assert room.audio(speaker) is None
    await refused(speaker.send("space.join", space_id=sid), "not_allowed")

    await refused(cohost.send("participant.remove", space_id=sid, user_id=room.host.user), "not_allowed")
    host = room.host
    await refused(host.send("participant.remove", space_id=sid, user_id=host.user), "not_allowed")
    await refused(room.host.send("participant.remove", space_id=sid, user_id=listener.user), "not_found")
    await refused(room.host.send("participant.remove", space_id=sid, user_id=uid("ghost")), "not_found")
    space = await room.get()
    assert roles(space) == {room.host.user: "host", cohost.user: "cohost"}
    assert space["listener_count"] == 1
    assert witness.events("participant.removed") == []


# -- co-hosts ------------------------------------------------------------------------------


async def test_cohosts_are_added_and_removed_by_the_host_up_to_two(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    first, speaker, third = await room.listener("c1"), await room.speaker(), await room.listener("c3")
    sid = room.sid

    await room.host.send("cohost.add", space_id=sid, user_id=first.user)
    changed = await third.event("stage.changed", reason="cohost_added", user_id=first.user)
    assert {e["user_id"]: e["role"] for e in changed["stage"]}[first.user] == "cohost"
    assert room.audio(first) == SEND_RECEIVE
    snap = await first.send("space.sync", space_id=sid)
    assert snap["role"] == "cohost" and snap["hands"] == []
    await room.host.send("cohost.add", space_id=sid, user_id=speaker.user)  # a speaker, promoted
    space = await room.get()
    assert sorted(space["host_ids"]) == sorted([room.host.user, first.user, speaker.user])
    assert space["speaker_ids"] == []

    await refused(room.host.send("cohost.add", space_id=sid, user_id=third.user), "limit_reached")
    await refused(room.host.send("cohost.add", space_id=sid, user_id=first.user), "conflict")
    await refused(first.send("cohost.add", space_id=sid, user_id=third.user), "not_allowed")
    await refused(first.send("cohost.remove", space_id=sid, user_id=speaker.user), "not_allowed")
    await refused(room.host.send("cohost.remove", space_id=sid, user_id=third.user), "not_found")
    await room.unchanged(space, room.host, first)

    await room.host.send("cohost.remove", space_id=sid, user_id=first.user)
    await third.event("stage.changed", reason="cohost_removed", user_id=first.user)
    assert roles(await room.get())[first.user] == "speaker"
    assert room.audio(first) == SEND_RECEIVE
    await refused(room.host.send("cohost.remove", space_id=sid, user_id=first.user), "conflict")
    await room.host.send("cohost.add", space_id=sid, user_id=third.user)  # a seat is free again
    assert roles(await room.get())[third.user] == "cohost"


# -- settings --------------------------------------------------------------------------------


async def test_settings_are_the_hosts_and_decide_who_may_ask_to_speak(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    cohost, friend, stranger = await room.cohost(), await room.listener("friend"), await room.listener()
    sid = room.sid

    answer = await room.host.send("settings.update", space_id=sid, title="  Renamed   room ")
    assert answer == {"settings": {"title": "Renamed room"}}
    changed = await stranger.event("settings.changed")
    assert changed["settings"] == {"title": "Renamed room"} and isinstance(changed["seq"], int)
    assert (await room.get())["title"] == "Renamed room"

    await room.host.send("settings.update", space_id=sid, speak_policy="invited")
    await refused(stranger.send("hand.raise", space_id=sid), "not_allowed")
    await room.host.send("speaker.invite", space_id=sid, user_id=stranger.user)  # invitations still work

    await room.host.send("settings.update", space_id=sid, speak_policy="following", handover=True)
    status, _ = await asyncio.to_thread(
        http, stack, "PUT", f"/me/follows/{friend.user}", None, token(stack, room.host.user)
    )
    assert status == 200
    await refused(stranger.send("hand.raise", space_id=sid), "not_allowed")
    await friend.send("hand.raise", space_id=sid)
    # Only the host's follows count, not a co-host's.
    await asyncio.to_thread(
        http, stack, "PUT", f"/me/follows/{stranger.user}", None, token(stack, cohost.user)
    )
    await refused(stranger.send("hand.raise", space_id=sid), "not_allowed")
    space = await room.get()
    assert space["speak_policy"] == "following" and space["handover"] is True

    await room.host.send("settings.update", space_id=sid, speak_policy="everyone")
    await stranger.send("hand.raise", space_id=sid)

    await refused(cohost.send("settings.update", space_id=sid, title="mine now"), "not_allowed")
    await refused(room.host.send("settings.update", space_id=sid), "bad_request")  # nothing to change
    await refused(room.host.send("settings.update", space_id=sid, title="   "), "bad_request")
    assert (await room.get())["title"] == "Renamed room"


# -- reactions ---------------------------------------------------------------------------


REACTIONS_TIMEOUT = 20.0  # one flush interval (1 s) and the fan-out queue's delay, on a loaded machine


def reaction_totals(client: Client, sid: str) -> dict[str, int]:
    """Every emoji's count summed over the `reactions` events a client received."""
    totals: dict[str, int] = {}
    for event in client.events("reactions", space_id=sid):
        assert event["total"] == sum(event["counts"].values())
        for emoji, n in event["counts"].items():
            totals[emoji] = totals.get(emoji, 0) + n
    return totals


async def test_reactions_from_a_fixed_set_and_rate_limited_per_user(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    fan, other = await room.listener("fan"), await room.listener("other")
    sid = room.sid
    # Stay inside one fixed window of the limiter.
    window = 10
    if time.time() % window > window - 1.5:
        await asyncio.sleep(window - time.time() % window + 0.05)
    emojis = sorted(rules.REACTIONS)
    limit = 5
    for emoji in emojis[:limit]:
        assert await fan.send("reaction.send", space_id=sid, emoji=emoji) == {}  # acknowledged at once
    expected = dict.fromkeys(emojis[:limit], 1)
    await until(lambda: reaction_totals(other, sid) == expected, REACTIONS_TIMEOUT, "fan's 5 reactions")
    first = other.events("reactions")[0]
    assert isinstance(first["seq"], int)
    assert {"user_id": fan.user, "emoji": first["recent"][0]["emoji"]} in first["recent"]
    err = await refused(fan.send("reaction.send", space_id=sid, emoji=emojis[limit]), "rate_limited")
    assert err.message
    await other.send("reaction.send", space_id=sid, emoji="🔥")  # the limit is per user
    await room.host.send("reaction.send", space_id=sid, emoji="🎉")

    err = await refused(other.send("reaction.send", space_id=sid, emoji="🍕"), "bad_request")
    assert sorted(err.data["allowed"]) == emojis
    await alive(fan)
    expected.update({"🔥": expected.get("🔥", 0) + 1, "🎉": expected.get("🎉", 0) + 1})
    await until(lambda: reaction_totals(other, sid) == expected, REACTIONS_TIMEOUT, "two more reactions")
    # the refused ones were never counted, and the sender sees the room's aggregates too
    await until(lambda: reaction_totals(fan, sid) == expected, REACTIONS_TIMEOUT, "the fan's view")
    assert_consecutive(other, sid, None)


async def test_a_reaction_storm_reaches_the_room_as_a_few_aggregates(stack, clients: Clients) -> None:
    """40 reactions from 20 people within a moment: a handful of events, every reaction counted once,
    and the last of the burst flushed without any further reaction (nor the minute's sweep)."""
    room = await Room.open(clients)
    watcher = await room.listener("watcher")
    fans = [await room.listener(f"fan{i}") for i in range(20)]
    sid = room.sid
    # the joins' coalesced count has gone out: the posts below are the storm's own
    await watcher.event("listeners.count", timeout=REACTIONS_TIMEOUT, listener_count=21)
    await asyncio.sleep(0.6)
    posts_before = stack.gateway.posted
    sent = [("🔥" if i % 3 else "👏") for i in range(40)]
    started = time.monotonic()
    await asyncio.gather(
        *(fans[i % 20].send("reaction.send", space_id=sid, emoji=emoji) for i, emoji in enumerate(sent))
    )
    acked = time.monotonic() - started
    expected = {"🔥": sent.count("🔥"), "👏": sent.count("👏")}
    await until(lambda: reaction_totals(watcher, sid) == expected, REACTIONS_TIMEOUT, "every reaction")
    took = time.monotonic() - started
    events = watcher.events("reactions", space_id=sid)
    # at most one event per flush interval (1 s) while the storm and its tail lasted, plus one
    assert 1 <= len(events) <= int(took) + 1, (len(events), took)
    assert all(1 <= len(e["recent"]) <= 5 for e in events)
    senders = {r["user_id"] for e in events for r in e["recent"]}
    assert senders <= {f.user for f in fans}
    # posts: the 40 replies plus one per member (22) per event, not 40 x 22
    await asyncio.sleep(0.3)
    posts = stack.gateway.posted - posts_before
    assert posts <= 40 + 22 * (len(events) + 1), (posts, len(events), acked)
    assert reaction_totals(watcher, sid) == expected  # nothing counted twice meanwhile


def reactions_pending(sid: str) -> bool:
    """Whether a flush of the space's reactions is claimed or a tally is still open."""
    from chalicelib import reactions

    keys = [*reactions.shard_keys(sid), reactions.claim_key(sid)]
    return any(
        t.counts is not None or t.flush_due is not None
        for t in reactions.ReactionTally.batch_get(keys, consistent_read=True)
    )


async def test_no_reactions_event_follows_the_end_of_the_space(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    fan, watcher = await room.listener("fan"), await room.listener("watcher")
    sid = room.sid
    assert await fan.send("reaction.send", space_id=sid, emoji="🔥") == {}
    assert reactions_pending(sid)
    await room.host.send("space.end", space_id=sid)
    await watcher.event("space.ended")
    # the flush ran (claim and tally taken) and sent nothing after space.ended
    await until(lambda: not reactions_pending(sid), REACTIONS_TIMEOUT, "the flush")
    await asyncio.sleep(0.3)
    assert watcher.events("reactions") == [] and fan.events("reactions") == []


async def test_a_flush_that_cannot_be_queued_fails_the_reaction_and_the_next_starts_over(
    stack, clients: Clients
) -> None:
    room = await Room.open(clients)
    fan, watcher = await room.listener("fan"), await room.listener("watcher")
    sid = room.sid
    with settings_overridden(FANOUT_QUEUE_URL=stack.env["FANOUT_QUEUE_URL"] + "-missing"):
        await refused(fan.send("reaction.send", space_id=sid, emoji="🔥"), "internal")
    # the tally it opened was closed and the flush claim released: nothing is stuck
    assert not reactions_pending(sid)
    assert await fan.send("reaction.send", space_id=sid, emoji="👏") == {}
    event = await watcher.event("reactions", timeout=REACTIONS_TIMEOUT)
    assert event["counts"] == {"👏": 1} and event["recent"] == [{"user_id": fan.user, "emoji": "👏"}]


# -- the end -------------------------------------------------------------------------------


SPACE_COMMANDS: dict[str, dict[str, Any]] = {
    "space.sync": {},
    "space.end": {},
    "hand.raise": {},
    "hand.lower": {},
    "invite.accept": {},
    "invite.decline": {},
    "stage.leave": {},
    "mic.mute": {},
    "mic.unmute": {},
    "speaker.invite": {"user_id": "TARGET"},
    "request.approve": {"user_id": "TARGET"},
    "request.deny": {"user_id": "TARGET"},
    "speaker.remove": {"user_id": "TARGET"},
    "speaker.mute": {"user_id": "TARGET"},
    "participant.remove": {"user_id": "TARGET"},
    "cohost.add": {"user_id": "TARGET"},
    "cohost.remove": {"user_id": "TARGET"},
    "settings.update": {"title": "new title"},
    "reaction.send": {"emoji": "👏"},
}


def _fields(action: str, target: str) -> dict[str, Any]:
    return {k: (target if v == "TARGET" else v) for k, v in SPACE_COMMANDS.get(action, {}).items()}


async def test_the_host_ends_the_space_and_then_everything_is_refused(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    cohost, speaker, listener = await room.cohost(), await room.speaker(), await room.listener()
    sid = room.sid
    await refused(cohost.send("space.end", space_id=sid), "not_allowed")
    await refused(speaker.send("space.end", space_id=sid), "not_allowed")
    assert (await room.get())["state"] == "live"

    assert await room.host.send("space.end", space_id=sid) == {"state": "ended"}
    for client in (room.host, cohost, speaker, listener):
        ended = await client.event("space.ended")
        assert ended["reason"] == "ended_by_host" and isinstance(ended["seq"], int)
    space = await room.get()
    assert space["state"] == "ended" and space["ended_at"]
    assert not local_media().meeting_exists(room.meeting_id)
    # as Chime does, the media service announces it on EventBridge
    (ended_event,) = stack.media_events.of_type("chime:MeetingEnded", room.meeting_id)
    assert ended_event["detail"]["externalMeetingId"] == sid

    attempts = [
        refused(client.send(action, space_id=sid, **_fields(action, target)), "space_ended")
        for client in (room.host, cohost, speaker, listener)
        for target in [speaker.user if client is listener else listener.user]
        for action in ["space.join", *SPACE_COMMANDS]
    ]
    await asyncio.gather(*attempts)
    for client in (room.host, cohost, speaker, listener):
        await refused(client.send("space.join", space_id=sid), "space_ended")
        await alive(client)
    newcomer = await clients.open(uid("late"))
    await refused(newcomer.send("space.join", space_id=sid), "space_ended")
    assert settled(await room.get()) == settled(space)
    for client in (room.host, listener):
        assert_consecutive(client, sid)


# -- refusals that change nothing ------------------------------------------------------


def _command_models() -> dict[str, type]:
    return {
        model.model_fields["action"].annotation.__args__[0]: model
        for model in protocol.AnyCommand.__origin__.__args__  # type: ignore[attr-defined]
    }


def bad_variants(action: str, sid: str, target: str) -> list[tuple[str, dict[str, Any]]]:
    """Commands of `action` that are malformed: a missing, extra, mistyped or oversized field."""
    model = _command_models()[action]
    good: dict[str, Any] = {"action": action}
    if "space_id" in model.model_fields:
        good["space_id"] = sid
    if "user_id" in model.model_fields:
        good["user_id"] = target
    good.update({"emoji": "👏"} if action == "reaction.send" else {})
    good.update({"category": "spam"} if action == "report.send" else {})
    wrong_type: dict[str, Any] = {
        "space_id": 7,
        "user_id": ["x"],
        "emoji": 1,
        "category": 3,
        "title": 5,
        "handover": "yes",
        "speak_policy": "friends",
        "note": {"n": 1},
    }
    too_big: dict[str, Any] = {
        "space_id": "s" * 65,
        "user_id": "u" * 65,
        "emoji": "👏" * 17,
        "title": "t" * 71,
        "note": "n" * 501,
        "category": "x" * 200,
    }
    out: list[tuple[str, dict[str, Any]]] = [("extra field", {**good, "extra": 1})]
    out.append(("ref of the wrong type", {**good, "ref": 12}))
    for name, info in model.model_fields.items():
        if name in ("action", "ref"):
            continue
        if info.is_required():
            out.append((f"missing {name}", {k: v for k, v in good.items() if k != name}))
        if name in wrong_type:
            out.append((f"{name} of the wrong type", {**good, name: wrong_type[name]}))
        if name in too_big:
            out.append((f"oversized {name}", {**good, name: too_big[name]}))
        if name in ("space_id", "user_id"):
            out.append((f"{name} with bad characters", {**good, name: "../etc"}))
            out.append((f"empty {name}", {**good, name: ""}))
            if info.is_required():
                out.append((f"null {name}", {**good, name: None}))
    return out


async def test_malformed_commands_are_bad_request_and_change_nothing(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    speaker, listener = await room.speaker(), await room.listener()
    await listener.send("hand.raise", space_id=room.sid)
    await until_rest(stack, room.sid, lambda s: s["participant_count"] == 3, "participant count")
    before = await room.get()
    host = room.host
    variants = [
        (action, what, message)
        for action in sorted(protocol.COMMAND_NAMES)
        for what, message in bad_variants(action, room.sid, listener.user)
    ]
    assert len(variants) > 150

    async def attempt(action: str, what: str, message: dict[str, Any]) -> None:
        try:
            err = await refused(host.request(message), "bad_request")
        except AssertionError as exc:
            raise AssertionError(f"{action}, {what}: {exc}") from None
        assert err.message, (action, what)

    # Sent at once: API Gateway runs the handler for each message concurrently.
    await asyncio.gather(*(attempt(*v) for v in variants if v[2].get("ref") != 12))
    for action, what, message in variants:
        if message.get("ref") == 12:  # a ref that cannot be echoed: the error has ref null
            await host.send_raw(message)
            await until(lambda: host.unmatched, what="an error with a null ref")
            frame = host.unmatched.pop()
            assert frame["type"] == "error" and frame["ref"] is None, frame
            assert frame["code"] == "bad_request", (action, what, frame)
    for raw in ("not json", "[1, 2]", '"text"', "{}", '{"action": 5}', '{"action": "space.explode"}'):
        await host.send_raw(raw)
        await until(lambda: host.unmatched, what=f"the error for {raw}")
        frame = host.unmatched.pop()
        assert frame["type"] == "error" and frame["code"] == "bad_request" and frame["ref"] is None, frame
    await refused(host.request({"action": "ping", "ref": "r" * 64, "x": 1}), "bad_request")
    await host.send_raw({"action": "ping", "ref": "r" * 65})  # too long to be echoed
    await until(lambda: host.unmatched, what="the error for an oversized ref")
    assert host.unmatched.pop()["code"] == "bad_request"
    await room.unchanged(before, host, speaker, listener)


async def test_commands_about_an_unknown_space_are_not_found(stack, clients: Clients) -> None:
    user = await clients.open(uid("user"))
    ghost = f"nosuchspace{uid('x')[-8:]}"
    await asyncio.gather(
        *(
            refused(user.send(action, space_id=ghost, **_fields(action, "someone")), "not_found")
            for action in ["space.join", *SPACE_COMMANDS]
        )
    )
    assert await user.send("space.leave", space_id=ghost) == {"left": False}
    await alive(user)


async def test_commands_from_someone_not_in_the_space_are_not_allowed(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    listener = await room.listener()
    await listener.send("hand.raise", space_id=room.sid)
    outsider, sid = await clients.open(uid("outsider")), room.sid
    before = await room.get()
    await asyncio.gather(
        *(
            refused(outsider.send(action, space_id=sid, **_fields(action, listener.user)), "not_allowed")
            for action in SPACE_COMMANDS
        )
    )
    assert await outsider.send("space.leave", space_id=room.sid) == {"left": False}
    await room.unchanged(before, outsider, listener)
    assert listener.events("stage.changed") == []


async def test_role_violations_are_not_allowed_and_change_nothing(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    sid = room.sid
    cohost, other_cohost = await room.cohost(), await room.cohost()
    speaker, other_speaker = await room.speaker(), await room.speaker()
    listener, asker = await room.listener(), await room.listener("asker")
    await asker.send("hand.raise", space_id=sid)
    await speaker.send("mic.unmute", space_id=sid)
    await until_rest(stack, sid, lambda s: s["participant_count"] == 7, "participant count")
    before, mark = await room.get(), listener.mark
    host = room.host.user

    attempts: list[tuple[Client, str, str | None]] = [
        # a listener acting as a moderator
        (listener, "speaker.mute", speaker.user),
        (listener, "request.approve", asker.user),
        (listener, "request.deny", asker.user),
        (listener, "speaker.invite", asker.user),
        (listener, "speaker.remove", speaker.user),
        (listener, "participant.remove", asker.user),
        (listener, "cohost.add", asker.user),
        (listener, "cohost.remove", cohost.user),
        (listener, "settings.update", None),
        (listener, "space.end", None),
        (listener, "mic.unmute", None),
        # a speaker acting as a moderator
        (speaker, "request.approve", asker.user),
        (speaker, "request.deny", asker.user),
        (speaker, "speaker.mute", other_speaker.user),
        (speaker, "speaker.remove", other_speaker.user),
        (speaker, "speaker.invite", listener.user),
        (speaker, "participant.remove", listener.user),
        (speaker, "cohost.add", listener.user),
        (speaker, "settings.update", None),
        (speaker, "space.end", None),
        # a co-host acting as the host, or on someone not below them
        (cohost, "cohost.add", asker.user),
        (cohost, "cohost.remove", other_cohost.user),
        (cohost, "settings.update", None),
        (cohost, "space.end", None),
        (cohost, "speaker.mute", host),
        (cohost, "speaker.mute", other_cohost.user),
        (cohost, "participant.remove", host),
        (cohost, "participant.remove", other_cohost.user),
        # the host cannot step off the stage or remove themselves
        (room.host, "stage.leave", None),
        (room.host, "participant.remove", host),
    ]

    async def attempt(client: Client, action: str, target: str | None) -> None:
        fields = _fields(action, target or "")
        try:
            await refused(client.send(action, space_id=sid, **fields), "not_allowed")
        except AssertionError as exc:
            raise AssertionError(f"{client.user} {action} {target}: {exc}") from None

    await asyncio.gather(*(attempt(*a) for a in attempts))
    await room.unchanged(before, room.host, cohost, speaker, listener)
    assert room.audio(speaker) == SEND_RECEIVE and room.audio(listener) == RECEIVE
    assert listener.events("stage.changed", since=mark) == []


async def test_broadcasts_are_numbered_one_by_one_and_private_events_are_not(stack, clients: Clients) -> None:
    room = await Room.open(clients)
    watcher, snapshot = await clients.join(uid("watcher"), room.sid)
    start = snapshot["seq"]
    asker = await room.listener("asker")
    await asker.send("hand.raise", space_id=room.sid)
    await room.host.send("request.approve", space_id=room.sid, user_id=asker.user)
    await asker.send("mic.unmute", space_id=room.sid)
    await room.host.send("settings.update", space_id=room.sid, title="numbered")
    await asker.send("reaction.send", space_id=room.sid, emoji="💯")
    await watcher.event("reactions", timeout=REACTIONS_TIMEOUT, counts={"💯": 1})
    await room.host.send("speaker.remove", space_id=room.sid, user_id=asker.user)
    await watcher.event("stage.changed", reason="moved_to_audience")
    seqs = assert_consecutive(watcher, room.sid, start)
    assert len(seqs) >= 5
    private = room.host.events("hand.raised")
    assert private and all("seq" not in e for e in private)
    assert (await watcher.send("space.sync", space_id=room.sid))["seq"] >= seqs[-1]


async def test_a_joiner_gets_every_broadcast_after_its_snapshot_even_one_racing_its_join(
    stack, clients: Clients, settings
) -> None:
    # Attendees one by one, so the join can be held at Chime: after it read the space and its
    # seq, before its membership commits.
    settings(ATTENDEE_POOL_BATCH="0")
    room = await Room.open(clients)
    watcher, _ = await clients.join(uid("watcher"), room.sid)
    joiner = await clients.open(uid("joiner"))
    before = chime().count("CreateAttendee")
    release = chime().hold_next("CreateAttendee")
    try:
        join = asyncio.ensure_future(joiner.call("space.join", space_id=room.sid))
        await until(lambda: chime().count("CreateAttendee") > before, what="the join to reach Chime")
        # Numbered and posted while the joiner is not a member yet: it reaches the others only.
        await room.host.send("settings.update", space_id=room.sid, title="raced")
        raced = await watcher.event("settings.changed", settings={"title": "raced"})
    finally:
        release.set()
    answer = await join
    assert answer["type"] == "reply", answer
    snapshot = answer["data"]
    # The reply includes the raced event (its seq and its effect), so nothing is missing...
    assert snapshot["seq"] >= raced["seq"] and snapshot["space"]["title"] == "raced", snapshot
    # ...and every broadcast after it reaches the joiner, numbered one by one.
    await room.host.send("settings.update", space_id=room.sid, title="after")
    await joiner.event("settings.changed", settings={"title": "after"})
    assert_consecutive(joiner, room.sid, snapshot["seq"])
    assert not joiner.events("settings.changed", settings={"title": "raced"})
