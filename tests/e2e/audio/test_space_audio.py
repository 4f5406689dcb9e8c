"""Hearing a space: real spaces over the WebSocket API, their media credentials, WHIP peers.

Every host power is checked on the audio itself: the stage is heard, a host mute silences
(and only the speaker's own unmute brings the voice back), a listener's microphone is
never heard, a removed participant is cut off, replica listeners hear the stage.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from audio_support import close_all, stays, until
from spaces_support import (
    Client,
    Clients,
    create_space,
    local_media,
    no_scan,  # noqa: F401  (autouse: no Scan during any test here)
    run,
    stored_member,
    uid,
)

from chalicelib.config import get_settings
from devstack.media.whip_client import WhipPeer

pytestmark = pytest.mark.e2e


def peer(stack: Any, media: dict[str, Any], tone: float | None = None) -> WhipPeer:
    """A WHIP peer for the `media` part of a join reply (or of a media.moved event)."""
    url = media["Meeting"]["MediaPlacement"]["SignalingUrl"]
    assert url == f"{stack.base_url}/media/whip/{media['Meeting']['MeetingId']}"
    return WhipPeer(stack.base_url, url, media["Attendee"]["JoinToken"], tone)


async def joined(stack: Any, media: dict[str, Any], tone: float | None = None) -> WhipPeer:
    audio = peer(stack, media, tone)
    response = await audio.join()
    assert response.status == 201, (response.status, response.body)
    return audio


async def open_space(clients: Clients) -> tuple[str, Client, dict[str, Any]]:
    host_id = uid("host")
    space = await asyncio.to_thread(create_space, clients.stack, host_id)
    host, snapshot = await clients.join(host_id, space["id"])
    return space["id"], host, snapshot


async def on_stage(clients: Clients, host: Client, sid: str) -> tuple[Client, dict[str, Any]]:
    """A listener who raised a hand and was approved: now a speaker, same credentials."""
    client, snapshot = await clients.join(uid("s"), sid)
    await client.send("hand.raise", space_id=sid)
    await host.send("request.approve", space_id=sid, user_id=client.user)
    await client.event("stage.changed", reason="request_approved", user_id=client.user)
    return client, snapshot


@pytest.fixture
def settings() -> Iterator[Any]:
    saved: dict[str, str | None] = {}

    def override(**values: str) -> None:
        for name, value in values.items():
            saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        get_settings.cache_clear()

    yield override
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


def test_the_host_is_heard_by_a_listener(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        sid, _, snapshot = await open_space(clients)
        _, listener_snapshot = await clients.join(uid("l"), sid)
        assert listener_snapshot["media"]["Attendee"]["Capabilities"]["Audio"] == "Receive"
        speaker = await joined(stack, snapshot["media"], tone=440)
        listener = await joined(stack, listener_snapshot["media"])
        try:
            await until(lambda: listener.hears(440), what="the listener hearing the host's 440 Hz")
            assert speaker.silent(), "the host hears their own voice"
        finally:
            await close_all(speaker, listener)

    run(stack, scenario)


def test_two_voices_on_stage_both_reach_the_audience(stack: Any) -> None:
    """A listener approved on stage re-POSTs with a microphone (WHIP has no renegotiation)."""

    async def scenario(clients: Clients) -> None:
        sid, host, snapshot = await open_space(clients)
        _, audience = await clients.join(uid("l"), sid)
        hosting = await joined(stack, snapshot["media"], tone=440)
        listener = await joined(stack, audience["media"])
        guest, guest_snapshot = await clients.join(uid("g"), sid)
        before = await joined(stack, guest_snapshot["media"], tone=660)  # a listener's mic: discarded
        try:
            await stays(lambda: listener.share(660) < 0.02, 0.5, "the listener-guest's mic not heard")
            await guest.send("hand.raise", space_id=sid)
            await host.send("request.approve", space_id=sid, user_id=guest.user)
            await guest.event("stage.changed", reason="request_approved", user_id=guest.user)
            await guest.send("mic.unmute", space_id=sid)
            speaking = await joined(stack, guest_snapshot["media"], tone=660)  # same token, new session
            try:
                await until(
                    lambda: listener.share(440) > 0.3 and listener.share(660) > 0.3,
                    what="the audience hearing both voices",
                )
                await until(lambda: hosting.hears(660) and speaking.hears(440), what="each speaker the other")
                await until(lambda: before.pc.connectionState == "closed", what="the replaced session closed")
            finally:
                await close_all(speaking)
        finally:
            await close_all(hosting, listener, before)

    run(stack, scenario)


def test_a_host_mute_silences_and_only_the_speakers_unmute_restores(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        sid, host, host_snapshot = await open_space(clients)
        speaker, snapshot = await on_stage(clients, host, sid)
        await speaker.send("mic.unmute", space_id=sid)
        _, audience = await clients.join(uid("l"), sid)
        voice = await joined(stack, snapshot["media"], tone=440)
        listener = await joined(stack, audience["media"])
        hosting = await joined(stack, host_snapshot["media"])
        try:
            await until(lambda: listener.hears(440), what="the speaker heard")
            await host.send("speaker.mute", space_id=sid, user_id=speaker.user)
            took = await until(
                lambda: listener.silent(0.1), timeout=1.0, what="silence within 1 s of the mute"
            )
            await stays(lambda: listener.silent(0.1) and hosting.silent(0.1), 0.5, "silence while muted")
            await host.send("mic.unmute", space_id=sid)  # a host cannot unmute someone else
            await stays(lambda: listener.silent(0.1), 0.3, "still silent after the host's own unmute")
            await speaker.send("mic.unmute", space_id=sid)
            await until(lambda: listener.hears(440), timeout=2.0, what="the voice back after the unmute")
            print(f"host mute to silence: {took * 1000:.0f} ms")
        finally:
            await close_all(voice, listener, hosting)

    run(stack, scenario)


def test_a_listeners_microphone_is_never_heard(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        sid, _, snapshot = await open_space(clients)
        _, sneaky_snapshot = await clients.join(uid("l"), sid)
        _, other_snapshot = await clients.join(uid("l"), sid)
        hosting = await joined(stack, snapshot["media"])
        sneaky = await joined(stack, sneaky_snapshot["media"], tone=550)  # a modified client sends anyway
        other = await joined(stack, other_snapshot["media"])
        try:
            await until(lambda: len(other.samples(1.0)) > 0 and len(hosting.samples(1.0)) > 0, what="audio")
            await stays(lambda: hosting.silent() and other.silent(), 1.0, "nobody hears the listener")
        finally:
            await close_all(hosting, sneaky, other)

    run(stack, scenario)


def test_a_removed_participant_is_cut_off_and_their_token_refused(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        sid, host, _ = await open_space(clients)
        speaker, snapshot = await on_stage(clients, host, sid)
        _, audience = await clients.join(uid("l"), sid)
        voice = await joined(stack, snapshot["media"], tone=440)
        listener = await joined(stack, audience["media"])
        try:
            await until(lambda: listener.hears(440), what="the speaker heard")
            await host.send("participant.remove", space_id=sid, user_id=speaker.user)
            await speaker.event("participant.removed")
            await until(
                lambda: voice.pc.connectionState == "closed", what="the removed peer's connection closed"
            )
            await until(lambda: listener.silent(0.1), timeout=1.0, what="silence once removed")
            again = await peer(stack, snapshot["media"], tone=440).join()
            assert again.status in (401, 404), (again.status, again.body)
            assert again.status == 404 and again.error["code"] == "not_found", again.body
        finally:
            await close_all(voice, listener)

    run(stack, scenario)


def test_ending_the_space_ends_every_audio_session(stack: Any) -> None:
    async def scenario(clients: Clients) -> None:
        sid, host, snapshot = await open_space(clients)
        _, audience = await clients.join(uid("l"), sid)
        hosting = await joined(stack, snapshot["media"], tone=440)
        listener = await joined(stack, audience["media"])
        try:
            await until(lambda: listener.hears(440), what="the host heard")
            await host.send("space.end", space_id=sid)
            await until(
                lambda: hosting.pc.connectionState == "closed" and listener.pc.connectionState == "closed",
                what="both connections closed",
            )
            late = await peer(stack, audience["media"]).join()
            assert late.status == 404, (late.status, late.body)
        finally:
            await close_all(hosting, listener)

    run(stack, scenario)


def test_a_replica_listener_promoted_to_the_stage_keeps_their_connection(stack: Any, settings: Any) -> None:
    """Chime's promote-to-primary (https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html):
    the listener's replica session is promoted in place with a primary attendee's credentials
    (`media.promoted`), is heard by the stage and by the other replicas, obeys a host mute, and is
    demoted when moved back to the audience (`media.demoted`: only the primary attendee deleted).
    A reconnect within the grace resumes with both credentials and promotes again.
    MEETING_MAX_ATTENDEES=14 leaves the primary one listener seat (13 are kept for the stage)."""
    settings(MEETING_MAX_ATTENDEES="14", RECONNECT_GRACE_SECONDS="60")
    registry = local_media()

    async def scenario(clients: Clients) -> None:
        sid, host, snapshot = await open_space(clients)
        _, first = await clients.join(uid("l"), sid)
        far_client, far_snapshot = await clients.join(uid("far"), sid)
        _, other_snapshot = await clients.join(uid("other"), sid)
        primary = snapshot["media"]["Meeting"]["MeetingId"]
        replica = far_snapshot["media"]["Meeting"]["MeetingId"]
        far_attendee = far_snapshot["media"]["Attendee"]["AttendeeId"]
        assert first["media"]["Meeting"]["MeetingId"] == primary
        assert far_snapshot["media"]["Meeting"]["PrimaryMeetingId"] == primary  # a replica
        assert other_snapshot["media"]["Meeting"]["MeetingId"] == replica
        hosting = await joined(stack, snapshot["media"], tone=440)
        far = await joined(stack, far_snapshot["media"], tone=550)
        other = await joined(stack, other_snapshot["media"])
        deleted: list[str] = []
        unsubscribe = registry.subscribe(
            type("Deletes", (), {"attendee_deleted": lambda _, a: deleted.append(a.attendee_id)})()
        )
        try:
            await until(lambda: far.hears(440), what="the replica listener hearing the stage")
            await until(lambda: far.pc.connectionState == "connected", what="the replica session up")
            await stays(lambda: hosting.silent(), 0.5, "the replica never heard")
            pc, location = far.pc, far.location

            mark = far_client.mark
            await far_client.send("hand.raise", space_id=sid)
            await host.send("request.approve", space_id=sid, user_id=far_client.user)
            promoted = await far_client.event("media.promoted", since=mark)
            credentials = promoted["media"]
            assert credentials["Meeting"]["MeetingId"] == primary
            assert "PrimaryMeetingId" not in credentials["Meeting"]
            assert credentials["Attendee"]["Capabilities"]["Audio"] == "SendReceive"
            seat = credentials["Attendee"]["AttendeeId"]
            assert registry.attendees(primary)[seat].external_user_id == f"u:{far_client.user}"
            answer = await far.promote(credentials["Attendee"]["JoinToken"])
            assert answer.status == 200, (answer.status, answer.body)
            await until(lambda: hosting.hears(550), what="the host hearing the promoted speaker")
            await until(lambda: other.share(550) > 0.3, what="another replica listener hearing them")
            assert far.pc is pc and far.location == location and pc.connectionState == "connected"
            assert far_attendee in registry.attendees(replica) and far_attendee not in deleted
            assert far_client.events("media.moved", since=mark) == []

            await host.send("speaker.mute", space_id=sid, user_id=far_client.user)
            await until(lambda: hosting.silent(0.1) and other.share(550) < 0.02, what="the host's mute")
            assert registry.attendees(primary)[seat].audio == "Receive"
            await far_client.send("mic.unmute", space_id=sid)
            await until(lambda: hosting.hears(550), what="the speaker's own unmute")

            # A reconnect within the grace: both credentials back; the new session promotes again.
            far_client.abort()
            await until(lambda: stored_member(sid, far_client.user).connection_id is None, what="away")
            back = await clients.open(far_client.user)
            resumed = await back.send("space.join", space_id=sid)
            assert resumed["role"] == "speaker"
            assert resumed["media"]["Attendee"]["AttendeeId"] == far_attendee
            assert resumed["primary_media"]["Attendee"]["AttendeeId"] == seat
            assert resumed["primary_media"]["Attendee"]["JoinToken"] == credentials["Attendee"]["JoinToken"]
            await close_all(far)
            far = await joined(stack, resumed["media"], tone=550)
            await until(lambda: far.pc.connectionState == "connected", what="the new replica session up")
            assert (await far.promote(resumed["primary_media"]["Attendee"]["JoinToken"])).status == 200
            await until(lambda: hosting.hears(550), what="heard again after the reconnect")

            mark = back.mark
            await host.send("speaker.remove", space_id=sid, user_id=back.user)
            await back.event("media.demoted", since=mark)
            await until(lambda: hosting.silent(0.1), what="silence after the demotion")
            assert seat not in registry.attendees(primary) and seat in deleted
            assert far_attendee in registry.attendees(replica) and far_attendee not in deleted
            await until(lambda: stack.media_server.promotion_of(far_attendee) is None, what="demoted")
            gap = await until(lambda: far.hears(440), what="the demoted listener hearing the stage")
            print(f"demotion: the stage heard again after {gap * 1000:.0f} ms")
            # the connection is kept throughout; the tone may stall for a frame on a loaded machine
            await stays(lambda: far.pc.connectionState == "connected", 0.3, "still connected")
            await until(lambda: far.hears(440), what="still hearing the stage")
        finally:
            unsubscribe()
            await close_all(hosting, far, other)

    run(stack, scenario)
