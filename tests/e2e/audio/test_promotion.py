"""Promotion out of a replica on the embedded media server, as Chime's SDK does it.

A replica attendee's WHIP session is promoted with the credentials of an attendee of the
PRIMARY meeting (`POST {Location}/promotion`): the same peer connection's uplink then counts
as that primary attendee; demotion (`DELETE .../promotion`, DeleteAttendee of the primary
attendee, the session closing) makes it a replica listener again.
https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html
Meetings are made straight in the registry; peers are aiortc clients; tones checked by FFT.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from audio_support import attendee, close_all, connect, meeting, set_audio, stays, until

pytestmark = pytest.mark.e2e


def run(scenario: Any) -> None:
    asyncio.run(scenario())


def joined_events(stack: Any, kind: str, meeting_id: str, attendee_id: str) -> list[dict[str, Any]]:
    return [
        e for e in stack.media_events.of_type(kind, meeting_id) if e["detail"]["attendeeId"] == attendee_id
    ]


async def replica_speaker(stack: Any, primary: Any) -> tuple[Any, Any, Any]:
    """A replica of `primary` and a receive-only attendee of it whose microphone plays 550 Hz,
    connected: what a listener seated in a replica is before the app promotes them."""
    replica = meeting(stack, primary)
    far_att = attendee(stack, replica, "Receive")
    far = await connect(stack, far_att, tone=550)
    await until(lambda: far.pc.connectionState == "connected", what="the replica session up")
    return replica, far_att, far


def test_a_promoted_replica_session_speaks_as_the_primary_attendee(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        host = await connect(stack, attendee(stack, primary), tone=440)
        replica, far_att, far = await replica_speaker(stack, primary)
        other = await connect(stack, attendee(stack, replica, "Receive"))
        seat = attendee(stack, primary, "SendReceive")  # what the app creates on promotion
        try:
            await until(lambda: other.hears(440), what="the replica listener hearing the stage")
            await stays(lambda: host.share(550) < 0.02, 0.4, "a replica listener is never heard")
            pc, location = far.pc, far.location

            promoted = await far.promote(seat.join_token)
            assert promoted.status == 200, (promoted.status, promoted.body)
            assert promoted.error["AttendeeId"] == seat.attendee_id
            assert promoted.error["Capabilities"]["Audio"] == "SendReceive"
            await until(lambda: host.hears(550), what="the host hearing the promoted listener")
            await until(lambda: other.share(550) > 0.3, what="another replica listener hearing them")
            await stays(lambda: far.share(550) < 0.05, 0.4, "mix-minus: never their own voice")
            assert far.hears(440), "the promoted listener still hears the stage"
            assert far.pc is pc and far.location == location and pc.connectionState == "connected"
            assert stack.media_server.promotion_of(far_att.attendee_id) == seat.attendee_id
            assert seat.attendee_id in await host.volumes()  # heard as the primary attendee
            assert far_att.attendee_id not in await host.volumes()
            assert seat.attendee_id in stack.media.connected_attendees(primary.meeting_id)
            assert joined_events(stack, "chime:AttendeeJoined", primary.meeting_id, seat.attendee_id)

            # Capabilities of the primary attendee rule the uplink (a host mute).
            set_audio(stack, seat, "Receive")
            await until(lambda: host.silent(), what="the mute silencing the promoted listener")
            set_audio(stack, seat, "SendReceive")
            await until(lambda: host.hears(550), what="the unmute")

            # Demotion by the client: heard no more, the connection goes on.
            demoted = await far.demote()
            assert demoted.status == 200, (demoted.status, demoted.body)
            await until(lambda: host.silent() and other.share(550) < 0.02, what="the demotion silencing them")
            await until(
                lambda: seat.attendee_id not in stack.media.connected_attendees(primary.meeting_id),
                what="AttendeeLeft for the primary attendee",
            )
            assert far.hears(440) and pc.connectionState == "connected"
            again = await far.demote()
            assert again.status == 409 and again.error["code"] == "conflict", (again.status, again.body)

            # Promoted again, then DeleteAttendee of the primary attendee demotes (the replica stays).
            assert (await far.promote(seat.join_token)).status == 200
            await until(lambda: host.hears(550), what="heard again after a second promotion")
            stack.media.delete_attendee(primary.meeting_id, seat.attendee_id)
            await until(lambda: host.silent(), what="DeleteAttendee of the primary attendee silencing them")
            await until(lambda: stack.media_server.promotion_of(far_att.attendee_id) is None, what="demoted")
            assert far_att.attendee_id in stack.media.attendees(replica.meeting_id)
            await stays(lambda: pc.connectionState == "connected" and far.hears(440), 0.3, "the replica kept")
            revoked = await far.promote(seat.join_token)
            assert revoked.status == 401 and revoked.error["code"] == "unauthorized", revoked
        finally:
            await close_all(host, far, other)

    run(scenario)


def test_a_promoted_session_closing_demotes_it(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        host = await connect(stack, attendee(stack, primary), tone=440)
        _, _, far = await replica_speaker(stack, primary)
        seat = attendee(stack, primary)
        try:
            assert (await far.promote(seat.join_token)).status == 200
            await until(lambda: host.hears(550), what="the promoted listener heard")
            left = await far.leave()
            assert left is not None and left.status == 200
            await until(lambda: host.silent(), what="silence once the session closed")
            await until(
                lambda: joined_events(stack, "chime:AttendeeLeft", primary.meeting_id, seat.attendee_id),
                what="AttendeeLeft for the primary attendee",
            )
            assert seat.attendee_id in stack.media.attendees(primary.meeting_id)  # only the connection went
        finally:
            await close_all(host, far)

    run(scenario)


def test_a_promotion_is_refused_with_a_clear_status(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        replica = meeting(stack, primary)
        elsewhere = meeting(stack)
        far_att = attendee(stack, replica, "Receive")
        far = await connect(stack, far_att)
        direct = await connect(stack, attendee(stack, primary))
        seat = attendee(stack, primary)
        try:
            cases = [
                (None, 401, "unauthorized"),
                ("not-a-token", 401, "unauthorized"),
                (attendee(stack, elsewhere).join_token, 403, "not_allowed"),  # another primary
                (far_att.join_token, 403, "not_allowed"),  # the replica's own attendee
            ]
            for token, status, code in cases:
                refused = await far.promote(token)
                assert (refused.status, refused.error["code"]) == (status, code), (token, refused.body)
                assert refused.error["message"]
            assert stack.media_server.promotion_of(far_att.attendee_id) is None

            not_replica = await direct.promote(seat.join_token)
            assert (not_replica.status, not_replica.error["code"]) == (409, "conflict"), not_replica.body
            assert "replica" in not_replica.error["message"]

            far.location = far.location + "x"  # an unknown session
            unknown = await far.promote(seat.join_token)
            assert (unknown.status, unknown.error["code"]) == (404, "not_found"), unknown.body
        finally:
            await close_all(far, direct)

    run(scenario)


def test_a_new_offer_of_a_promoted_attendee_is_not_promoted(stack: Any) -> None:
    """Chime demotes on any reconnection: the client promotes again with the same credentials."""

    async def scenario() -> None:
        primary = meeting(stack)
        host = await connect(stack, attendee(stack, primary), tone=440)
        _, far_att, far = await replica_speaker(stack, primary)
        seat = attendee(stack, primary)
        try:
            assert (await far.promote(seat.join_token)).status == 200
            await until(lambda: host.hears(550), what="the promoted listener heard")
            again = await connect(stack, far_att, tone=550)  # a reconnect: a new session
            try:
                await until(lambda: host.silent(), what="the new session not promoted")
                assert stack.media_server.promotion_of(far_att.attendee_id) is None
                assert (await again.promote(seat.join_token)).status == 200
                await until(lambda: host.hears(550), what="heard after promoting again")
            finally:
                await close_all(again)
        finally:
            await close_all(host, far)

    run(scenario)


def test_the_primary_attendee_connecting_on_its_own_takes_over_from_the_promotion(stack: Any) -> None:
    async def scenario() -> None:
        primary = meeting(stack)
        listener = await connect(stack, attendee(stack, primary, "Receive"))
        _, far_att, far = await replica_speaker(stack, primary)
        seat = attendee(stack, primary)
        try:
            assert (await far.promote(seat.join_token)).status == 200
            await until(lambda: listener.hears(550), what="the promoted listener heard")
            direct = await connect(stack, seat, tone=660)  # e.g. another device of the same person
            try:
                await until(lambda: listener.hears(660), what="the direct session heard")
                assert stack.media_server.promotion_of(far_att.attendee_id) is None
                await until(lambda: listener.share(550) < 0.02, what="the demoted session no longer heard")
                await stays(lambda: listener.share(550) < 0.02, 0.4, "the demoted session not heard")
                assert far.pc.connectionState == "connected"
            finally:
                await close_all(direct)
        finally:
            await close_all(listener, far)

    run(scenario)
