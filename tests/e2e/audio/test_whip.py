"""WHIP signaling of the embedded media server: the contract and every refusal, with a clear error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from audio_support import attendee, close_all, connect, meeting, signaling_url

from devstack.media.whip_client import WhipPeer, whip_request

pytestmark = pytest.mark.e2e

MINIMAL_OFFER = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def offer_sdp() -> str:
    """A real audio offer from an aiortc peer (not sent anywhere)."""
    from aiortc import RTCPeerConnection

    from devstack.media.server import rtc_configuration

    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.fixture(scope="module")
def sdp() -> str:
    return asyncio.run(offer_sdp())


def without_opus(sdp: str) -> str:
    """The same audio offer with Opus taken out (G.711 left)."""
    pt = next(line.split()[0].split(":")[1] for line in sdp.splitlines() if "opus/48000" in line)
    lines = [line for line in sdp.splitlines() if not line.startswith((f"a=rtpmap:{pt} ", f"a=fmtp:{pt} "))]

    def drop_pt(line: str) -> str:
        return " ".join(t for i, t in enumerate(line.split()) if i < 3 or t != pt)

    lines = [drop_pt(line) if line.startswith("m=audio") else line for line in lines]
    assert "opus" not in "\n".join(lines).lower()
    return "\r\n".join(lines) + "\r\n"


def refused(response: Any, status: int, code: str, words: str) -> None:
    assert response.status == status, (response.status, response.body)
    assert response.error["code"] == code, response.body
    assert words in response.error["message"], response.body
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_join_answers_201_with_the_sdp_and_the_session_location(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        who = attendee(stack, room, "Receive")
        peer = await connect(stack, who)
        try:
            answer = peer.answer
            assert answer is not None
            assert answer.headers["content-type"].startswith("application/sdp")
            assert answer.body.startswith("v=0")
            location = answer.headers["location"]
            assert location.startswith(f"/media/whip/{room.meeting_id}/")
            assert "location" in answer.headers["access-control-expose-headers"].lower()
            # Only loopback host candidates, and no server-reflexive or relay ones.
            candidates = [line for line in answer.body.splitlines() if line.startswith("a=candidate:")]
            assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates), candidates
            gone = await peer.leave()
            assert gone is not None and gone.status == 200
            again = whip_request(stack.base_url + location, "DELETE")
            refused(again, 404, "not_found", "no such WHIP session")
        finally:
            await close_all(peer)

    asyncio.run(scenario())


def test_tokens_missing_unknown_or_of_another_meeting_are_refused(stack: Any, sdp: str) -> None:
    room, other = meeting(stack), meeting(stack)
    who = attendee(stack, room)
    url = signaling_url(stack, room.meeting_id)
    refused(whip_request(url, body=sdp), 401, "unauthorized", "missing Authorization")
    refused(whip_request(url, body=sdp, token="not-a-token"), 401, "unauthorized", "unknown join token")
    wrong = whip_request(signaling_url(stack, other.meeting_id), body=sdp, token=who.join_token)
    refused(wrong, 403, "not_allowed", "another meeting")


def test_tokens_of_deleted_attendees_and_ended_meetings_are_not_found(stack: Any, sdp: str) -> None:
    room = meeting(stack)
    deleted, orphan = attendee(stack, room), attendee(stack, room)
    stack.media.delete_attendee(room.meeting_id, deleted.attendee_id)
    url = signaling_url(stack, room.meeting_id)
    refused(whip_request(url, body=sdp, token=deleted.join_token), 404, "not_found", "deleted")
    stack.media.delete_meeting(room.meeting_id)
    refused(whip_request(url, body=sdp, token=orphan.join_token), 404, "not_found", "has ended")
    unknown = signaling_url(stack, "00000000-0000-0000-0000-000000000000")
    refused(whip_request(unknown, body=sdp, token="x"), 404, "not_found", "does not exist")


def test_bad_bodies_are_refused(stack: Any, sdp: str) -> None:
    room = meeting(stack)
    who = attendee(stack, room)
    url = signaling_url(stack, room.meeting_id)
    as_json = whip_request(url, body=sdp, token=who.join_token, content_type="application/json")
    refused(as_json, 415, "bad_request", "application/sdp")
    refused(whip_request(url, body="hello", token=who.join_token), 400, "bad_request", "not an SDP offer")
    no_audio = whip_request(url, body=MINIMAL_OFFER + "a=tool:opus/48000\r\n", token=who.join_token)
    refused(no_audio, 400, "bad_request", "no audio")
    refused(whip_request(url, body=without_opus(sdp), token=who.join_token), 400, "bad_request", "Opus")
    huge = whip_request(url, body="v=0\r\n" + "a=x\r\n" * 20_000, token=who.join_token)
    refused(huge, 400, "bad_request", "larger than")
    assert stack.media.connected_attendees(room.meeting_id) == set()


def test_methods_and_cors(stack: Any) -> None:
    room = meeting(stack)
    url = signaling_url(stack, room.meeting_id)
    preflight = whip_request(url, "OPTIONS")
    assert preflight.status == 204
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert preflight.headers["accept-post"] == "application/sdp"
    refused(whip_request(url, "GET"), 405, "bad_request", "not supported")
    patch = whip_request(
        url + "/some-session", "PATCH", body="a=candidate", content_type="application/trickle-ice-sdpfrag"
    )
    refused(patch, 405, "bad_request", "trickle ICE")
    assert whip_request(url + "/some-session", "OPTIONS").status == 204


def test_a_peer_without_a_token_gets_nothing(stack: Any) -> None:
    async def scenario() -> None:
        room = meeting(stack)
        peer = WhipPeer(stack.base_url, signaling_url(stack, room.meeting_id), "", None)
        try:
            response = await peer.join()
            assert response.status == 401
            assert peer.location is None
        finally:
            await close_all(peer)

    asyncio.run(scenario())
