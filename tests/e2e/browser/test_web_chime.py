"""The web client's Chime path, as far as it can go without Chime: from a join reply built by
the real ChimeMediaAdapter (its client stubbed with botocore's Stubber against the real
model) to the SDK's MeetingSessionConfiguration, in the pinned bundle `make web` builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib import media

from .web_support import TIMEOUT_MS

pytestmark = pytest.mark.browser

BUNDLE = Path(__file__).resolve().parents[3] / "web" / "vendor" / "amazon-chime-sdk.min.js"
MEETING_ID = "4b1a6c6e-0f7d-4a8e-9a55-2f8f0c7d9e11"
ATTENDEE_ID = "9d0e2f14-3c6b-4f0a-8b7e-5a4d3c2b1a09"
# MediaPlacement as CreateMeeting returns it (shape from the API reference).
PLACEMENT = {
    "AudioHostUrl": "abcd1234.k.m3.ue1.app.chime.aws:3478",
    "AudioFallbackUrl": f"wss://haxrp.m3.ue1.app.chime.aws:443/calls/{MEETING_ID}",
    "SignalingUrl": f"wss://signal.m3.ue1.app.chime.aws/control/{MEETING_ID}",
    "TurnControlUrl": "https://2713.cell.us-east-1.meetings.chime.aws/v2/turn_sessions",
    "ScreenDataUrl": f"wss://bitpw.m3.ue1.app.chime.aws:443/v2/screen/{MEETING_ID}",
    "ScreenViewingUrl": f"wss://bitpw.m3.ue1.app.chime.aws:443/ws/connect?passcode=null&viewer_uuid=null&X-BitHub-Call-Id={MEETING_ID}",
    "ScreenSharingUrl": f"wss://bitpw.m3.ue1.app.chime.aws:443/v2/screen/{MEETING_ID}",
    "EventIngestionUrl": "https://data.svc.ue1.ingest.chime.aws/v1/client-events",
}


def join_media(user_id: str) -> dict[str, Any]:
    """`media` of a space.join reply, as chalicelib builds it from Chime's answers."""
    client = boto3.client(
        "chime-sdk-meetings", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_response(
        "create_meeting",
        {
            "Meeting": {
                "MeetingId": MEETING_ID,
                "ExternalMeetingId": "sp-chime-1",
                "MediaRegion": "us-east-1",
                "MediaPlacement": PLACEMENT,
            }
        },
    )
    stub.add_response(
        "create_attendee",
        {
            "Attendee": {
                "ExternalUserId": media.external_user_id(user_id),
                "AttendeeId": ATTENDEE_ID,
                "JoinToken": "ZGVhZGJlZWYtam9pbi10b2tlbg",
                "Capabilities": {"Audio": "Receive", "Video": "None", "Content": "None"},
            }
        },
    )
    with stub:
        adapter = media.ChimeMediaAdapter(client, media_region="us-east-1")
        meeting = adapter.create_meeting("sp-chime-1", max_attendees=250)
        attendee = adapter.create_attendee(meeting.meeting_id, user_id, media.RECEIVE)
    return media.credentials(meeting, attendee)


CONFIGURE = """async (joinMedia) => {
  const m = await import("/app/media.js");
  const chime = await import("/app/chime.js");
  const session = await m.createMedia(joinMedia, {});
  const sdk = await chime.loadChimeSdk();
  const c = chime.chimeConfiguration(sdk, joinMedia);
  return {
    kind: m.mediaKind(joinMedia),
    implementation: session.constructor.name,
    sdkVersion: sdk.Versioning.sdkVersion,
    isConfiguration: c instanceof sdk.MeetingSessionConfiguration,
    meetingId: c.meetingId,
    externalMeetingId: c.externalMeetingId,
    attendeeId: c.credentials.attendeeId,
    externalUserId: c.credentials.externalUserId,
    joinToken: c.credentials.joinToken,
    signalingURL: c.urls.signalingURL,
    audioHostURL: c.urls.audioHostURL,
    turnControlURL: c.urls.turnControlURL,
    userId: chime.userIdFromExternal(c.credentials.externalUserId),
  };
}"""


def test_join_reply_to_chime_meeting_session_configuration(stack, browser_with_tone) -> None:
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: `make web` builds it (`make test` does so first)")
    joined = join_media("zeynep.ş")  # a non-ASCII id travels base64url-encoded in ExternalUserId
    context = browser_with_tone(440).new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(stack.base_url + "/")
        assert page.evaluate("'ChimeSDK' in window") is False  # loaded only on the Chime path
        got = page.evaluate(CONFIGURE, joined)
    finally:
        context.close()
    assert not errors, errors
    assert got["kind"] == "chime" and got["implementation"] == "ChimeMedia"
    assert got["sdkVersion"] == "3.32.0"
    assert got["isConfiguration"] is True
    assert got["meetingId"] == MEETING_ID
    assert got["externalMeetingId"] == "sp-chime-1"
    assert got["attendeeId"] == ATTENDEE_ID
    assert got["joinToken"] == joined["Attendee"]["JoinToken"]
    assert got["externalUserId"] == media.external_user_id("zeynep.ş")
    assert got["userId"] == "zeynep.ş"
    assert got["signalingURL"] == PLACEMENT["SignalingUrl"]
    assert got["audioHostURL"] == PLACEMENT["AudioHostUrl"]
    assert got["turnControlURL"] == PLACEMENT["TurnControlUrl"]


def test_the_signaling_url_picks_the_media_path(stack, browser_with_tone) -> None:
    """docs/asyncapi.yaml MediaCredentials: http(s) is the embedded server (WHIP), wss is Chime."""
    urls = [
        "http://127.0.0.1:8000/media/whip/m1",
        "https://media.example.org/media/whip/m1",
        f"wss://signal.m3.ue1.app.chime.aws/control/{MEETING_ID}",
        "ftp://example.org/m1",
    ]
    context = browser_with_tone(440).new_context()
    page = context.new_page()
    try:
        page.goto(stack.base_url + "/")
        kinds = page.evaluate(
            """async (urls) => { const m = await import("/app/media.js");
               const kinds = urls.map((u) => m.mediaKind({Meeting: {MediaPlacement: {SignalingUrl: u}}}));
               return [...kinds, m.mediaKind({}), m.mediaKind(null)]; }""",
            urls,
        )
    finally:
        context.close()
    assert kinds == ["whip", "whip", "chime", None, None, None]


PROMOTE = """async (promoted) => {
  const chime = await import("/app/chime.js");
  const sdk = await chime.loadChimeSdk();
  const c = chime.primaryCredentials(sdk, promoted);
  return {
    isCredentials: c instanceof sdk.MeetingSessionCredentials,
    attendeeId: c.attendeeId,
    externalUserId: c.externalUserId,
    joinToken: c.joinToken,
    redacted: JSON.stringify(c).includes(promoted.Attendee.JoinToken) === false,
    facade: ["promoteToPrimaryMeeting", "demoteFromPrimaryMeeting"].map(
      (name) => typeof sdk.DefaultAudioVideoFacade.prototype[name]),
    ok: sdk.MeetingSessionStatusCode.OK,
    rejected: sdk.MeetingSessionStatusCode.AudioAuthenticationRejected,
  };
}"""


def test_media_promoted_to_the_sdks_promotion_credentials(stack, browser_with_tone) -> None:
    """`media.promoted` carries a primary attendee's credentials (the join shape); the page turns
    them into the MeetingSessionCredentials that `audioVideo.promoteToPrimaryMeeting` takes
    (https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html)."""
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: `make web` builds it (`make test` does so first)")
    promoted = join_media("ayşe")  # an attendee created in the primary, as the app does on promotion
    context = browser_with_tone(440).new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(stack.base_url + "/")
        got = page.evaluate(PROMOTE, promoted)
    finally:
        context.close()
    assert got["isCredentials"] is True
    assert got["attendeeId"] == ATTENDEE_ID
    assert got["externalUserId"] == media.external_user_id("ayşe")
    assert got["joinToken"] == promoted["Attendee"]["JoinToken"]
    assert got["redacted"] is True  # the SDK keeps the token out of its logs
    assert got["facade"] == ["function", "function"]
    assert isinstance(got["ok"], int) and got["ok"] != got["rejected"]
