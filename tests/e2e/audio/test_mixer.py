"""The embedded media server's mixer over WHIP, with meetings made straight in its registry.

Chime's semantics on the audio itself: mix-minus, capabilities applied live, deletes
closing connections, replica listeners hearing the primary's stage. Peers are aiortc
clients in this process on loopback; tones are checked by FFT, silence by RMS.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from audio_support import attendee, close_all, connect, meeting, set_audio, stays, until

from devstack.media.whip_client import WhipPeer, whip_request

pytestmark = pytest.mark.e2e


def run(scenario: Any) -> None:
    asyncio.run(scenario())


def test_a_speakers_tone_reaches_a_listener_and_not_the_speaker(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        speaker = await connect(stack, attendee(stack, room), tone=440)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: listener.hears(440), what="the listener hearing 440 Hz")
            assert speaker.silent(), "the speaker hears their own voice"
            assert stack.media.connected_attendees(room.meeting_id) == {
                a for a in stack.media.attendees(room.meeting_id)
            }
        finally:
            await close_all(speaker, listener)

    run(scenario)


def test_two_speakers_each_hear_the_other_and_a_listener_hears_both(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        a = await connect(stack, attendee(stack, room), tone=440)
        b = await connect(stack, attendee(stack, room), tone=660)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(
                lambda: listener.share(440) > 0.3 and listener.share(660) > 0.3,
                what="the listener hearing both 440 and 660 Hz",
            )
            await until(lambda: a.hears(660) and b.hears(440), what="each speaker hearing the other")
            # mix-minus: neither speaker hears their own tone in the mix
            assert a.share(440) < 0.05, a.share(440)
            assert b.share(660) < 0.05, b.share(660)
        finally:
            await close_all(a, b, listener)

    run(scenario)


def test_a_capability_change_applies_live_to_the_audio(stack: Any) -> None:
    """Host mute: Audio=Receive silences the speaker within a second; SendReceive brings the tone back."""

    async def scenario() -> None:
        room = meeting(stack)
        who = attendee(stack, room)
        speaker = await connect(stack, who, tone=440)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: listener.hears(440), what="the tone before the mute")
            set_audio(stack, who, "Receive")
            took = await until(lambda: listener.silent(0.1), timeout=1.0, what="silence after the mute")
            await stays(lambda: listener.silent(0.1), 0.5, "silence while muted (the client still sends)")
            set_audio(stack, who, "SendReceive")
            await until(lambda: listener.hears(440), timeout=2.0, what="the tone after the unmute")
            assert took < 1.0
        finally:
            await close_all(speaker, listener)

    run(scenario)


def test_uplinks_of_receive_and_none_are_never_heard_and_send_only_hears_nothing(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        speaker = await connect(stack, attendee(stack, room), tone=440)
        listener = await connect(stack, attendee(stack, room, "Receive"), tone=550)  # a modified client
        nobody = await connect(stack, attendee(stack, room, "None"), tone=770)
        sender = await connect(stack, attendee(stack, room, "Send"), tone=330)
        try:
            await until(lambda: listener.share(440) > 0.3 and listener.share(330) > 0.3, what="the senders")
            await stays(
                lambda: (
                    speaker.share(550) < 0.02 and speaker.share(770) < 0.02 and listener.share(770) < 0.02
                ),
                1.0,
                "the Receive and None uplinks stay out of every mix",
            )
            await until(lambda: speaker.hears(330), what="the speaker hearing the Send attendee")
            assert nobody.silent() and sender.silent(), "Send and None receive no audio"
        finally:
            await close_all(speaker, listener, nobody, sender)

    run(scenario)


def test_deleting_an_attendee_closes_their_connection_and_revokes_the_token(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        who = attendee(stack, room)
        speaker = await connect(stack, who, tone=440)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: listener.hears(440), what="the tone")
            stack.media.delete_attendee(room.meeting_id, who.attendee_id)
            await until(
                lambda: speaker.pc.connectionState == "closed", what="the server closing the connection"
            )
            await until(lambda: listener.silent(0.1), timeout=1.0, what="silence once the speaker is gone")
            again = await WhipPeer(stack.base_url, speaker.signaling_url, who.join_token, 440).join()
            assert again.status == 404, again
            assert again.error["code"] == "not_found" and "deleted" in again.error["message"]
        finally:
            await close_all(speaker, listener)

    run(scenario)


def test_deleting_the_meeting_ends_every_session_of_it_and_of_its_replicas(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        replica = meeting(stack, primary)
        peers = [
            await connect(stack, attendee(stack, primary), tone=440),
            await connect(stack, attendee(stack, primary, "Receive")),
            await connect(stack, attendee(stack, replica, "Receive")),
        ]
        try:
            await until(lambda: peers[2].hears(440), what="the replica listener hearing the stage")
            stack.media.delete_meeting(primary.meeting_id)
            await until(
                lambda: all(p.pc.connectionState == "closed" for p in peers), what="every connection closed"
            )
            late = await WhipPeer(stack.base_url, peers[0].signaling_url, peers[0].token).join()
            assert late.status == 404, late
        finally:
            await close_all(*peers)

    run(scenario)


def test_a_replica_listener_hears_the_primary_stage_and_is_never_heard(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        replica = meeting(stack, primary)
        a = await connect(stack, attendee(stack, primary), tone=440)
        b = await connect(stack, attendee(stack, primary), tone=660)
        # Even with SendReceive, an attendee of a replica only receives the primary's presenters.
        far = await connect(stack, attendee(stack, replica, "SendReceive"), tone=550)
        try:
            await until(
                lambda: far.share(440) > 0.3 and far.share(660) > 0.3, what="the replica hearing both"
            )
            await stays(lambda: a.share(550) < 0.02 and b.share(550) < 0.02, 0.6, "the replica never heard")
        finally:
            await close_all(a, b, far)

    run(scenario)


def test_a_new_offer_with_the_same_token_replaces_the_session(stack: Any) -> None:
    """A listener promoted to the stage re-POSTs with a microphone: WHIP has no renegotiation."""

    async def scenario() -> None:
        room = meeting(stack)
        who = attendee(stack, room, "Receive")
        first = await connect(stack, who)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: first.pc.connectionState == "connected", what="the first session up")
            set_audio(stack, who, "SendReceive")
            second = await connect(stack, who, tone=660)
            assert second.location != first.location
            await until(lambda: first.pc.connectionState == "closed", what="the first session closed")
            await until(lambda: listener.hears(660), what="the new microphone heard")
            gone = await first.leave()
            assert gone is not None and gone.status == 404, gone  # the replaced session is gone
            assert stack.media.connected_attendees(room.meeting_id) >= {who.attendee_id}
            left = await second.leave()
            assert left is not None and left.status == 200, left
            await until(
                lambda: who.attendee_id not in stack.media.connected_attendees(room.meeting_id),
                what="the registry seeing the attendee leave",
            )
        finally:
            await close_all(first, listener)

    run(scenario)


def test_the_mixer_keeps_time_when_a_sender_stalls(stack: Any) -> None:
    """An absent sender contributes silence, not drift: the other voice goes on uninterrupted."""

    async def scenario() -> None:
        room = meeting(stack)
        a = await connect(stack, attendee(stack, room), tone=440)
        b = await connect(stack, attendee(stack, room), tone=660)
        listener = await connect(stack, attendee(stack, room, "Receive"))
        try:
            await until(lambda: listener.share(660) > 0.3, what="both voices")
            assert a.mic is not None
            a.mic.set(None)  # a's microphone goes quiet
            started = time.monotonic()
            await until(lambda: listener.hears(660) and listener.share(440) < 0.02, what="660 alone")
            assert time.monotonic() - started < 1.5
        finally:
            await close_all(a, b, listener)

    run(scenario)


def test_volumes_say_who_is_heard_and_how_loud(stack: Any) -> None:
    """GET on the session: the local stand-in for Chime's volume indicators (the mix is one track)."""

    async def scenario() -> None:
        room = meeting(stack)
        loud_one, quiet_one = attendee(stack, room), attendee(stack, room)
        loud = await connect(stack, loud_one, tone=440)
        quiet = await connect(stack, quiet_one, tone=660)
        assert quiet.mic is not None
        quiet.mic.set(None)  # a microphone on, in a silent room
        listener_one = attendee(stack, room, "Receive")
        listener = await connect(stack, listener_one)
        try:
            await until(lambda: listener.hears(440), what="the loud speaker")

            async def volumes_until(check: Any, what: str) -> dict[str, float]:
                deadline = time.monotonic() + 3.0
                while not check(volumes := await listener.volumes()):
                    assert time.monotonic() < deadline, f"{what}: {volumes}"
                    await asyncio.sleep(0.05)
                return volumes

            volumes = await volumes_until(
                lambda v: v.get(loud_one.attendee_id, 0) > 0.1, "the loud speaker's volume"
            )
            assert set(volumes) == {loud_one.attendee_id, quiet_one.attendee_id}  # senders only
            assert volumes[quiet_one.attendee_id] < 0.01, volumes
            set_audio(stack, loud_one, "Receive")  # host mute: no longer heard, no longer listed
            await volumes_until(lambda v: loud_one.attendee_id not in v, "the muted speaker unlisted")
            gone = await listener.leave()
            assert gone is not None and gone.status == 200
            stale = whip_request(stack.base_url + (listener.location or ""), "GET")
            assert stale.status == 404 and stale.error["code"] == "not_found"
        finally:
            await close_all(loud, quiet, listener)

    run(scenario)
