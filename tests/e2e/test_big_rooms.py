"""Big rooms through the local stack: fan-out shards on the queue, 410 clean-up, replica meetings.

The sizes are made small with settings (FANOUT_SHARD_THRESHOLD, MEETING_MAX_ATTENDEES,
MAX_LISTENERS in os.environ, read again by get_settings(); the `settings` fixture puts
them back), so a room of a few clients takes the paths a room of thousands takes.
The app runs in this process: the tests read its tables and its local media service.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber
from conftest import (
    Client,
    Clients,
    Room,
    admin_token,
    alive,
    attendee_of,
    audio,
    create_space,
    get_space,
    http,
    local_media,
    refused,
    report_message,
    schedules_paused,
    send_reports,
    stored_member,
    stored_space,
    uid,
    until,
    wait_for_case,
)

from chalicelib import media

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_scan")]  # no Scan during any test here

Override = Callable[..., None]  # the `settings` fixture (conftest)


def fanout_poller(stack: Any) -> Any:
    (poller,) = [p for p in stack.pollers if p.name.endswith("on_fanout_shard")]
    return poller


async def open_room(stack: Any, clients: Clients, listeners: int) -> tuple[str, Client, list[Client]]:
    """A live space, its host joined, and `listeners` listeners joined one by one."""
    room = await Room.open(clients)
    return room.sid, room.host, await room.listeners(listeners)


async def end(stack: Any, host: Client, space_id: str) -> None:
    await host.send("space.end", space_id=space_id)


# --------------------------------------------------------------------------- fan-out shards


async def test_a_broadcast_past_the_threshold_goes_out_in_shards_once_to_everyone(
    stack: Any, clients: Clients, settings: Override, aws_calls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib import shards

    settings(FANOUT_SHARD_THRESHOLD="3", FANOUT_SHARD_SIZE="2")
    posted: list[list[str]] = []
    original = shards.post_shard

    def recording(shard: dict[str, Any], on_gone: Callable[[str], None]) -> Any:
        if '"unmuted"' in shard["data"]:
            posted.append(shard["connection_ids"])
        return original(shard, on_gone)

    monkeypatch.setattr(shards, "post_shard", recording)
    poller = fanout_poller(stack)
    sid, host, listeners = await open_room(stack, clients, 7)
    everyone = [host, *listeners]
    marks = {c.user: c.mark for c in everyone}
    batches = poller.batches
    aws_calls.reset()

    await host.send("mic.unmute", space_id=sid)

    events = [await c.event("stage.changed", since=marks[c.user], reason="unmuted") for c in everyone]
    assert len({e["seq"] for e in events}) == 1
    await asyncio.sleep(0.3)  # a duplicate would have come by now
    for client in everyone:
        assert len(client.events("stage.changed", since=marks[client.user], reason="unmuted")) == 1
    assert aws_calls.snapshot().get("sqs:SendMessageBatch", 0) >= 1
    assert poller.batches > batches
    # 8 recipients, shards of 2: four shards, each connection in exactly one
    assert sorted(len(s) for s in posted) == [2, 2, 2, 2]
    assert len({c for s in posted for c in s}) == 8
    await end(stack, host, sid)


# --------------------------------------------------------------------------- 410 clean-up


def plant_stale_listener(space_id: str) -> tuple[str, str]:
    """A listener whose socket is gone but whose $disconnect never came: records, no connection."""
    from pynamodb.transactions import TransactWrite

    from chalicelib import connections, counters
    from chalicelib.clock import now_iso
    from chalicelib.db import dynamo
    from chalicelib.models import Connection, Member, Presence

    user = uid("stale")
    connection_id = uuid.uuid4().hex[:15] + "="  # API Gateway's shape; the gateway never issued it
    now = int(time.time())
    Connection(
        connection_id=connection_id,
        user_id=user,
        connected_at=now * 1000,
        last_seen=now,
        sweep_shard=connections.sweep_shard(connection_id),
        expires_at=now + 3600,
        space_id=space_id,
    ).save()
    with TransactWrite(connection=dynamo()) as tx:
        tx.save(
            Member(
                space_id,
                user,
                role="listener",
                present=True,
                removed=False,
                connection_id=connection_id,
                joined_at=now_iso(),
            )
        )
        tx.save(Presence(space_id, user, connection_id=connection_id))  # as its join wrote it
        tx.update(*counters.change(space_id, user, 1))  # as its join counted it
    return user, connection_id


def stale_state(space_id: str, user: str, connection_id: str) -> tuple[bool, bool]:
    """(connection record exists, member present)."""
    from chalicelib import spaces
    from chalicelib.models import Connection

    try:
        Connection.get(connection_id, consistent_read=True)
        record = True
    except Connection.DoesNotExist:
        record = False
    member = spaces.get_member(space_id, user)
    return record, bool(member and member.present)


@pytest.mark.parametrize("path", ["direct", "sharded"])
async def test_a_410_removes_the_lost_connection_and_its_membership(
    stack: Any, clients: Clients, settings: Override, aws_calls: Any, path: str
) -> None:
    if path == "sharded":
        settings(FANOUT_SHARD_THRESHOLD="3", FANOUT_SHARD_SIZE="2")
    sid, host, listeners = await open_room(stack, clients, 2)
    await until(lambda: get_space(stack, sid)["listener_count"] == 2, what="two listeners")
    with schedules_paused(stack):  # the broadcast below, not a sweep, must find the stale one
        user, cid = await asyncio.to_thread(plant_stale_listener, sid)
        assert cid not in stack.gateway.connections
        assert await asyncio.to_thread(stale_state, sid, user, cid) == (True, True)
        assert (await asyncio.to_thread(get_space, stack, sid))["listener_count"] == 3
        marks = {c.user: c.mark for c in (host, *listeners)}
        aws_calls.reset()

        await host.send("mic.unmute", space_id=sid)

        for client in (host, *listeners):
            await client.event("stage.changed", since=marks[client.user], reason="unmuted")
        await until(
            lambda: stale_state(sid, user, cid) == (False, False), what="the stale connection cleaned up"
        )
        queued = aws_calls.snapshot().get("sqs:SendMessageBatch", 0)
        assert queued >= 1 if path == "sharded" else queued == 0
    space = await asyncio.to_thread(get_space, stack, sid)
    assert space["listener_count"] == 2  # the leave took back its count
    for client in (host, *listeners):
        await alive(client)
    await end(stack, host, sid)


# --------------------------------------------------------------------------- replica meetings


def meeting_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    return snapshot["media"]["Meeting"]


async def test_listeners_past_the_primary_seats_go_to_replicas(
    stack: Any, clients: Clients, settings: Override
) -> None:
    """MEETING_MAX_ATTENDEES=16: the primary keeps 13 seats for the stage, so 3 listeners sit in it;
    then replica 1 takes 16, then replica 2 opens. Ending the space deletes all three meetings."""
    from chalicelib import placement

    settings(MEETING_MAX_ATTENDEES="16")
    assert placement.primary_listener_seats(16) == 3
    port = local_media()
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    sid = space["id"]
    host, host_snap = await clients.join(host_id, sid)
    primary = meeting_of(host_snap)["MeetingId"]
    assert "PrimaryMeetingId" not in meeting_of(host_snap)

    snaps = [(await clients.join(uid("l"), sid))[1] for _ in range(3)]
    assert [meeting_of(s)["MeetingId"] for s in snaps] == [primary] * 3

    # two joins race to open replica 1: both land in the one replica
    racing = await asyncio.gather(clients.join(uid("l"), sid), clients.join(uid("l"), sid))
    replica1 = meeting_of(racing[0][1])["MeetingId"]
    assert meeting_of(racing[1][1])["MeetingId"] == replica1 != primary
    for _, snap in racing:
        assert meeting_of(snap)["PrimaryMeetingId"] == primary
        assert meeting_of(snap)["ExternalMeetingId"] == f"{sid}-r1"
        assert snap["media"]["Attendee"]["Capabilities"]["Audio"] == "Receive"
    assert port.meetings()[replica1].primary_meeting_id == primary

    rest = [(await clients.join(uid("l"), sid))[1] for _ in range(14)]
    assert {meeting_of(s)["MeetingId"] for s in rest} == {replica1}
    assert len(port.attendees(replica1)) == 16
    assert len(port.attendees(primary)) == 4  # the host and three listeners

    client, snap = await clients.join(uid("l"), sid)
    replica2 = meeting_of(snap)["MeetingId"]
    assert replica2 not in (primary, replica1)
    assert meeting_of(snap)["ExternalMeetingId"] == f"{sid}-r2"
    assert port.meetings()[replica2].primary_meeting_id == primary
    assert audio(replica2, client.user) == "Receive"
    record = await asyncio.to_thread(stored_space, sid)
    assert [r["meeting_id"] for r in record.replicas] == [replica1, replica2]
    assert record.replica_count == 2

    await end(stack, host, sid)
    for meeting_id in (primary, replica1, replica2):
        assert not port.meeting_exists(meeting_id)


def audio_attendee(meeting_id: str, user: str) -> str:
    found = attendee_of(meeting_id, user)
    assert found is not None, (meeting_id, user)
    return str(found.attendee_id)


async def promoted_room(
    stack: Any, clients: Clients, settings: Override
) -> tuple[str, Client, str, Client, str, list[Client]]:
    """A space whose primary is full of listeners (MEETING_MAX_ATTENDEES=16: 3 listener seats),
    and `mover`, a listener seated in a replica: (sid, host, primary, mover, replica, in primary)."""
    settings(MEETING_MAX_ATTENDEES="16")
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, stack, host_id)
    sid = space["id"]
    host, host_snap = await clients.join(host_id, sid)
    primary = meeting_of(host_snap)["MeetingId"]
    in_primary = [(await clients.join(uid("l"), sid))[0] for _ in range(3)]
    mover, snap = await clients.join(uid("mover"), sid)
    replica = meeting_of(snap)["MeetingId"]
    assert replica != primary and meeting_of(snap)["PrimaryMeetingId"] == primary
    return sid, host, primary, mover, replica, in_primary


async def approve(host: Client, who: Client, sid: str) -> Any:
    mark = host.mark
    await who.send("hand.raise", space_id=sid)
    await host.event("hand.raised", since=mark, user_id=who.user)
    return await host.send("request.approve", space_id=sid, user_id=who.user)


async def test_a_listener_promoted_out_of_a_replica_gets_a_primary_attendee_and_keeps_the_replica(
    stack: Any, clients: Clients, settings: Override
) -> None:
    """Chime's promote-to-primary: the replica attendee (and connection) stays; the client gets a
    primary attendee's credentials to promote with (`media.promoted`); going back to the audience
    deletes that one only (`media.demoted`).
    https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html"""
    port = local_media()
    sid, host, primary, mover, replica, in_primary = await promoted_room(stack, clients, settings)
    old_attendee = audio_attendee(replica, mover.user)
    _, other_snap = await clients.join(uid("l"), sid)
    assert meeting_of(other_snap)["MeetingId"] == replica
    everyone = [*clients.all]
    marks = {c.user: c.mark for c in everyone}

    await approve(host, mover, sid)
    promoted = await mover.event("media.promoted", since=marks[mover.user])
    assert "seq" not in promoted  # private
    assert promoted["media"]["Meeting"]["MeetingId"] == primary
    assert "PrimaryMeetingId" not in promoted["media"]["Meeting"]
    attendee = promoted["media"]["Attendee"]
    assert attendee["Capabilities"]["Audio"] == "SendReceive"
    assert attendee["ExternalUserId"] == media.external_user_id(mover.user)  # named after the user
    assert port.attendees(primary)[attendee["AttendeeId"]].audio == "SendReceive"
    assert old_attendee in port.attendees(replica)  # the replica attendee is kept
    assert port.attendees(replica)[old_attendee].audio == "Receive"
    stored = stored_member(sid, mover.user)
    assert (stored.attendee_id, stored.meeting_id) == (old_attendee, replica)
    assert (stored.primary_attendee_id, stored.primary_meeting_id) == (attendee["AttendeeId"], primary)
    for client in everyone:
        event = await client.event("stage.changed", since=marks[client.user], reason="request_approved")
        assert {e["user_id"]: e["role"] for e in event["stage"]}[mover.user] == "speaker"
    for client in everyone:
        assert client.events("media.moved", since=marks[client.user]) == []
        if client is not mover:
            assert client.events("media.promoted", since=marks[client.user]) == []

    # The mic goes to the primary attendee, the one that sends.
    await host.send("speaker.mute", space_id=sid, user_id=mover.user)
    assert port.attendees(primary)[attendee["AttendeeId"]].audio == "Receive"
    assert port.attendees(replica)[old_attendee].audio == "Receive"
    await mover.send("mic.unmute", space_id=sid)
    assert port.attendees(primary)[attendee["AttendeeId"]].audio == "SendReceive"

    # Back to the audience (host-muted first: the seat goes back all the same).
    await host.send("speaker.mute", space_id=sid, user_id=mover.user)
    mark = mover.mark
    await host.send("speaker.remove", space_id=sid, user_id=mover.user)
    await mover.event("media.demoted", since=mark)
    assert attendee["AttendeeId"] not in port.attendees(primary)
    assert old_attendee in port.attendees(replica)
    stored = stored_member(sid, mover.user)
    assert stored.attendee_id == old_attendee and stored.primary_attendee_id is None
    assert mover.events("media.moved", since=mark) == []

    # Someone who joined straight into the primary still gives the seat back by moving to a replica.
    direct = in_primary[0]
    await approve(host, direct, sid)
    mark = direct.mark
    await host.send("speaker.remove", space_id=sid, user_id=direct.user)
    back = await direct.event("media.moved", since=mark)
    assert back["media"]["Meeting"]["MeetingId"] == replica
    assert audio(primary, direct.user) is None and audio(replica, direct.user) == "Receive"

    await end(stack, host, sid)
    assert not port.meeting_exists(primary) and not port.meeting_exists(replica)


async def test_a_promotion_into_a_full_primary_is_limit_reached_and_changes_nothing(
    stack: Any, clients: Clients, settings: Override
) -> None:
    """A promotion takes a seat in the primary (Chime: AudioCallAtCapacity when it is full); here
    CreateAttendee in a full primary answers LimitExceeded: the stage is put back, no attendee left."""
    port = local_media()
    sid, host, primary, mover, replica, _ = await promoted_room(stack, clients, settings)
    fillers = 0
    while len(port.attendees(primary)) < 16:  # other apps' attendees fill the stage's seats
        port.create_attendee(
            primary, f"u:filler{fillers}", {"Audio": "Receive", "Video": "None", "Content": "None"}
        )
        fillers += 1
    before = {**port.attendees(primary)}
    replica_before = {**port.attendees(replica)}
    mark = mover.mark

    await mover.send("hand.raise", space_id=sid)
    err = await refused(host.send("request.approve", space_id=sid, user_id=mover.user), "limit_reached")
    assert "full" in err.message
    assert port.attendees(primary) == before  # no orphan attendee
    assert port.attendees(replica) == replica_before
    space = await asyncio.to_thread(get_space, stack, sid)
    assert mover.user not in {e["user_id"] for e in space["stage"]}
    stored = stored_member(sid, mover.user)
    assert stored.role == "listener" and stored.primary_attendee_id is None and stored.hand_raised_at
    await alive(mover)
    assert mover.events("media.promoted", since=mark) == []
    assert mover.events("stage.changed", since=mark) == []


async def test_a_throttled_promotion_is_rate_limited_and_changes_nothing(
    stack: Any, clients: Clients, settings: Override
) -> None:
    port = local_media()
    sid, host, primary, mover, _, _ = await promoted_room(stack, clients, settings)
    before = {**port.attendees(primary)}
    await mover.send("hand.raise", space_id=sid)
    with stack.chime.failing("CreateAttendee", "Throttling"):
        await refused(host.send("request.approve", space_id=sid, user_id=mover.user), "rate_limited")
    assert port.attendees(primary) == before
    space = await asyncio.to_thread(get_space, stack, sid)
    assert mover.user not in {e["user_id"] for e in space["stage"]}
    # Once Chime has room for the call again, the same approval works.
    await host.send("request.approve", space_id=sid, user_id=mover.user)
    seat = (await mover.event("media.promoted"))["media"]["Attendee"]["AttendeeId"]
    # A throttled DeleteAttendee on the way back: rate_limited, still on stage, the seat kept.
    mark = mover.mark
    with stack.chime.failing("DeleteAttendee", "Throttling"):
        await refused(host.send("speaker.remove", space_id=sid, user_id=mover.user), "rate_limited")
    space = await asyncio.to_thread(get_space, stack, sid)
    assert mover.user in {e["user_id"] for e in space["stage"]}
    assert seat in port.attendees(primary) and stored_member(sid, mover.user).primary_attendee_id == seat
    assert mover.events("media.demoted", since=mark) == []
    await host.send("speaker.remove", space_id=sid, user_id=mover.user)
    await mover.event("media.demoted", since=mark)
    assert seat not in port.attendees(primary)


async def test_a_promoted_member_joining_from_another_device_gets_both_credentials(
    stack: Any, clients: Clients, settings: Override
) -> None:
    """One user, one member: the new device takes over the replica attendee and gets the primary
    attendee's credentials to promote with (the older device is replaced)."""
    port = local_media()
    sid, host, primary, mover, replica, _ = await promoted_room(stack, clients, settings)
    replica_attendee = audio_attendee(replica, mover.user)
    await approve(host, mover, sid)
    promoted = (await mover.event("media.promoted"))["media"]["Attendee"]
    other = await clients.open(mover.user)
    snap = await other.send("space.join", space_id=sid)
    assert snap["role"] == "speaker"
    assert snap["media"]["Attendee"]["AttendeeId"] == replica_attendee
    assert snap["primary_media"]["Attendee"]["AttendeeId"] == promoted["AttendeeId"]
    assert snap["primary_media"]["Attendee"]["JoinToken"] == promoted["JoinToken"]
    assert snap["primary_media"]["Meeting"]["MeetingId"] == primary
    await mover.event("session.replaced")
    assert promoted["AttendeeId"] in port.attendees(primary) and replica_attendee in port.attendees(replica)
    # A listener's join carries no primary credentials.
    _, plain = await clients.join(uid("l"), sid)
    assert "primary_media" not in plain


@pytest.mark.parametrize("how", ["leave", "removed", "grace", "suspended"])
async def test_a_promoted_member_who_goes_frees_both_attendees(
    stack: Any, clients: Clients, settings: Override, how: str
) -> None:
    settings(RECONNECT_GRACE_SECONDS="1" if how == "grace" else "0")
    port = local_media()
    sid, host, primary, mover, replica, _ = await promoted_room(stack, clients, settings)
    old_attendee = audio_attendee(replica, mover.user)
    await approve(host, mover, sid)
    seat = (await mover.event("media.promoted"))["media"]["Attendee"]["AttendeeId"]
    if how == "leave":
        await mover.send("space.leave", space_id=sid)
    elif how == "removed":
        await host.send("participant.remove", space_id=sid, user_id=mover.user)
    elif how == "suspended":  # an admin's suspension, a durable effect (admin/effects.py)
        send_reports(stack, [json.dumps(report_message(sid, uid("rep"), mover.user))])
        case = await asyncio.to_thread(wait_for_case, stack, "user", mover.user, 1)
        body = {"action": "suspend", "reason": "raid", "duration_seconds": 600}
        status, answer = await asyncio.to_thread(
            http, stack, "POST", f"/admin/cases/{case['id']}/actions", body, token=admin_token(stack)
        )
        assert status == 200, answer
    else:
        mover.abort()  # the socket drops; the reconnect grace (1 s) runs out, the sweep makes them leave
    await until(
        lambda: seat not in port.attendees(primary) and old_attendee not in port.attendees(replica),
        timeout=10,
        what="both attendees deleted",
    )
    stored = stored_member(sid, mover.user)
    assert stored.primary_attendee_id is None and stored.primary_join_token is None
    assert not stored.present


# --------------------------------------------------------------------------- MAX_LISTENERS


def test_the_listener_count_is_read_consistently(stack: Any) -> None:
    """An eventually consistent read right after a join's or leave's write can miss it: the count a
    join checks MAX_LISTENERS against, and the one published, must include the latest writes."""
    from chalicelib import counters

    client = counters.SpaceCounter._get_connection().connection.client
    seen: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)

    client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", record)
    try:
        assert counters.listeners(uid("nowhere")) == 0
    finally:
        client.meta.events.unregister("provide-client-params.dynamodb.BatchGetItem", record)
    assert seen and all(
        request.get("ConsistentRead") is True for p in seen for request in p["RequestItems"].values()
    )


async def test_a_full_space_refuses_listeners_until_one_leaves(
    stack: Any, clients: Clients, settings: Override
) -> None:
    settings(MAX_LISTENERS="5")
    sid, host, listeners = await open_room(stack, clients, 5)
    late = await clients.open(uid("late"))
    err = await refused(late.send("space.join", space_id=sid), "limit_reached")
    assert "5" in err.message
    assert (await asyncio.to_thread(get_space, stack, sid))["listener_count"] == 5

    assert (await listeners[0].send("space.leave", space_id=sid))["left"] is True
    snapshot = await late.send("space.join", space_id=sid)
    assert snapshot["role"] == "listener"
    assert snapshot["listener_count"] == 5
    await refused(_join_new(clients, sid), "limit_reached")  # full again
    await end(stack, host, sid)


async def _join_new(clients: Clients, space_id: str) -> Any:
    client = await clients.open(uid("later"))
    return await client.send("space.join", space_id=space_id)


# --------------------------------------------------------------------------- replicas at Chime (Stubber)

PRIMARY_ID = "11111111-2222-3333-4444-555555555555"
REPLICA_IDS = ["66666666-7777-8888-9999-aaaaaaaaaaaa", "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"]
ATTENDEE_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


class FakeSpace:
    """What placement reads of a Space item; `update` keeps what it was asked to write."""

    def __init__(self, space_id: str, primary: media.Meeting) -> None:
        from chalicelib import placement

        self.space_id = space_id
        self.meeting_id = primary.meeting_id
        self.meeting = placement.meeting_record(primary)
        self.replicas: list[dict[str, Any]] | None = None
        self.meeting_generation: int | None = None
        self.media_region: str | None = None
        self.updates: list[tuple[list[Any], Any]] = []

    def update(self, actions: list[Any], condition: Any = None) -> None:
        self.updates.append((actions, condition))

    def refresh(self, consistent_read: bool = False) -> None:
        raise AssertionError("no concurrent opener here")


def test_replicas_are_created_at_chime_with_the_primary_and_distinct_ids(
    stack: Any, settings: Override, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ChimeMediaAdapter: CreateMeeting with PrimaryMeetingId, ExternalMeetingId {space}-r{n}
    and a ClientRequestToken per replica. (Here, not in tests/unit: placement imports the PynamoDB
    models, whose table names are read at import, so it must not be imported before the stack.)"""
    import boto3

    from chalicelib import clients, placement, rules

    # one CreateAttendee per listener (no pool): the per-call shapes are what is checked here
    settings(MEETING_MAX_ATTENDEES="250", ATTENDEE_POOL_BATCH="0")
    client = boto3.client(
        "chime-sdk-meetings", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    adapter = media.ChimeMediaAdapter(client, media_region="us-east-1")
    # this thread's media port for the test's length (the stack's own calls are unaffected: the
    # test drives placement directly, nothing else runs meanwhile that places attendees)
    monkeypatch.setattr(clients, "_overrides", {**clients._overrides, "media": adapter})
    space_id = uuid.uuid4().hex[:16]
    placement_ = {"AudioHostUrl": "h:3478", "SignalingUrl": "wss://s"}
    primary = media.Meeting(PRIMARY_ID, space_id, "us-east-1", placement_)
    space = FakeSpace(space_id, primary)
    receive = {"Audio": "Receive", "Video": "None", "Content": "None"}
    features = {
        "Audio": {"EchoReduction": "AVAILABLE"},
        "Video": {"MaxResolution": "None"},
        "Content": {"MaxResolution": "None"},
        "Attendee": {"MaxCount": 250},
    }

    def create_meeting(stub: Stubber, n: int) -> str:
        external = f"{space_id}-r{n}"
        token = media.client_request_token(external, PRIMARY_ID)
        body = {
            "MeetingId": REPLICA_IDS[n - 1],
            "ExternalMeetingId": external,
            "PrimaryMeetingId": PRIMARY_ID,
            "MediaRegion": "us-east-1",
            "MediaPlacement": placement_,
        }
        expected = {
            "ClientRequestToken": token,
            "MediaRegion": "us-east-1",
            "ExternalMeetingId": external,
            "PrimaryMeetingId": PRIMARY_ID,
            "MeetingFeatures": features,
        }
        stub.add_response("create_meeting", {"Meeting": body}, expected)
        return token

    def create_attendee(stub: Stubber, meeting_id: str, user: str) -> None:
        body = {
            "AttendeeId": ATTENDEE_ID,
            "ExternalUserId": f"u:{user}",
            "JoinToken": "join-token",
            "Capabilities": receive,
        }
        expected = {"MeetingId": meeting_id, "ExternalUserId": f"u:{user}", "Capabilities": receive}
        stub.add_response("create_attendee", {"Attendee": body}, expected)

    listeners = placement.primary_listener_seats(250)
    with Stubber(client) as stub:
        # the primary's listener seats are taken: replica 1 opens
        token1 = create_meeting(stub, 1)
        create_attendee(stub, REPLICA_IDS[0], "alice")
        meeting, _ = placement.place(space, "alice", rules.Role.LISTENER, "Receive", listeners)
        assert meeting.meeting_id == REPLICA_IDS[0] and meeting.primary_meeting_id == PRIMARY_ID
        space.replicas = [placement.meeting_record(meeting)]  # what the recorded update wrote

        # replica 1 is full (Chime's LimitExceeded): replica 2 opens
        stub.add_client_error(
            "create_attendee",
            service_error_code="LimitExceededException",
            service_message="full",
            http_status_code=400,
            expected_params={"MeetingId": REPLICA_IDS[0], "ExternalUserId": "u:bob", "Capabilities": receive},
        )
        token2 = create_meeting(stub, 2)
        create_attendee(stub, REPLICA_IDS[1], "bob")
        meeting, _ = placement.place(space, "bob", rules.Role.LISTENER, "Receive", listeners + 1)
        assert meeting.meeting_id == REPLICA_IDS[1]
        stub.assert_no_pending_responses()

    assert len({token1, token2, media.client_request_token(space_id, None)}) == 3
    assert len(space.updates) == 2
    for n, (actions, condition) in enumerate(space.updates):
        written = str(actions)
        assert REPLICA_IDS[n] in written and "replica_count" in written
        assert "replica_count" in str(condition)
