"""Hearing a space in the browser: three pages on the web client, real WebRTC to the embedded
media server (WHIP), microphones fed by generated tones through Chromium's fake capture.

ada (host) and lis (listener) share a browser whose fake mic plays 440 Hz; spk (the speaker)
has one that plays 660 Hz, so what the listener hears tells whose voice it is.
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
from playwright.sync_api import expect

from .web_support import wait_for

pytestmark = pytest.mark.browser

SILENCE = 0.01  # RMS; the tones arrive at ~0.1-0.3 after Opus and the mix
HZ_TOLERANCE = 5.0  # 5.9 Hz FFT bins, interpolated

# Counts getUserMedia calls: a listener's page must never open the microphone.
COUNT_MIC_REQUESTS = """
(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  window.micRequests = 0;
  navigator.mediaDevices.getUserMedia = (c) => { window.micRequests += 1; return real(c); };
})();
"""


def hears(person, hz: float, timeout: float = 8.0) -> float:
    """Wait until the person's page hears hz as the dominant frequency; return it."""
    return wait_for(
        f"{person.name} hears {hz} Hz",
        lambda: person.audio("dominantFrequency()"),
        lambda f: f is not None and abs(f - hz) <= HZ_TOLERANCE,
        timeout,
    )


def silent(person, timeout: float = 3.0) -> None:
    """Wait for silence at the person's page (the analyser's window is 8192 samples, 170 ms)."""
    wait_for(f"{person.name} hears silence", lambda: person.audio("level()"), lambda v: v < SILENCE, timeout)


def test_listener_hears_the_stage_and_host_powers_act_on_the_audio(people) -> None:
    name = f"Audio {secrets.token_hex(3)}"
    ada = people("ada", hz=440)
    ada.create_space(name)
    expect(ada.page.locator("#audio-state")).to_contain_text("connected (speaker)")
    ada.click("Unmute my mic")  # on stage muted at first, as in X Spaces

    lis = people("lis", hz=440)
    lis.page.add_init_script(COUNT_MIC_REQUESTS)
    lis.page.reload()
    expect(lis.page.locator("#connection")).to_have_text("online")
    lis.join_from_list(name)
    expect(lis.page.locator("#audio-state")).to_contain_text("connected (listener)")
    hears(lis, 440)
    # The page's meter (every 100 ms) stamps the first sound above its threshold.
    first_audio_ms = wait_for(
        "first audio stamped", lambda: lis.audio("firstAudioMs"), lambda v: v is not None
    )
    print(f"\nlistener: join reply -> first audio {first_audio_ms} ms (page clock)")

    spk = people("spk", hz=660)
    spk.join_from_list(name)
    spk.click("Raise my hand")
    ada.page.locator('#hands li[data-user="spk"]').get_by_role("button", name="Bring on stage").click()
    expect(spk.page.locator("#audio-state")).to_contain_text("connected (speaker)")  # re-offered with a mic
    # the host sees who is really connected (Chime's AttendeeJoined, carried onto the stage)
    expect(ada.tile("spk")).to_have_attribute("data-audio", "joined")
    spk.click("Unmute my mic")
    ada.click("Mute my mic")  # self-mute: the host's 440 Hz goes, the speaker's 660 Hz stays
    expect(lis.tile("ada")).to_have_attribute("data-muted-by", "self")
    hears(lis, 660)
    expect(lis.tile("spk")).to_have_class(re.compile(r"\bspeaking\b"))
    for person in (ada, lis, spk):
        person.screenshot("audio-speaker-on-stage")

    clicked = time.monotonic()
    ada.tile_action("spk", "Mute")
    silent(lis)
    print(f"host clicks Mute -> silence at the listener: {(time.monotonic() - clicked) * 1000:.0f} ms")
    expect(spk.me_on_stage()).to_have_attribute("data-muted-by", "host")
    spk.click("Unmute my mic")  # only the speaker can lift it
    hears(lis, 660)

    ada.tile_action("spk", "Remove")
    expect(spk.page.locator("#removed")).to_have_text("A moderator removed you from this space.")
    expect(spk.page.locator("#audio-state")).to_have_text("off")
    silent(lis)

    assert lis.page.evaluate("window.micRequests") == 0  # a listener is never asked for the mic
    assert lis.audio("sending") is False
    assert lis.page.evaluate("'ChimeSDK' in window") is False  # the Chime bundle is for AWS only
    assert isinstance(first_audio_ms, int) and first_audio_ms < 5000


def test_a_replica_listener_brought_on_stage_is_promoted_on_the_same_connection(people, settings) -> None:
    """Chime's promote-to-primary in the page: `media.promoted` → POST {session}/promotion and the
    mic on the same WHIP connection; `media.demoted` → demoted, mic off, still listening.
    MEETING_MAX_ATTENDEES=14 leaves the primary one listener seat (13 are kept for the stage)."""
    settings(MEETING_MAX_ATTENDEES="14", RECONNECT_GRACE_SECONDS="60")
    name = f"Replica {secrets.token_hex(3)}"
    ada = people("ada", hz=440)
    ada.create_space(name)
    expect(ada.page.locator("#audio-state")).to_contain_text("connected (speaker)")
    lis = people("lis", hz=440)
    lis.join_from_list(name)  # the primary's one listener seat
    far = people("far", hz=660)
    far.page.add_init_script(COUNT_MIC_REQUESTS)
    far.page.reload()
    expect(far.page.locator("#connection")).to_have_text("online")
    far.join_from_list(name)
    expect(far.page.locator("#audio-state")).to_contain_text("connected (listener)")
    creds = far.page.evaluate("window.sohbet.app.mediaCreds.Meeting")
    assert creds.get("PrimaryMeetingId"), creds  # seated in a replica
    session = far.audio("session")
    assert session and far.page.evaluate("window.micRequests") == 0
    ada.click("Unmute my mic")
    hears(far, 440)  # the replica hears the stage

    far.click("Raise my hand")
    ada.page.locator('#hands li[data-user="far"]').get_by_role("button", name="Bring on stage").click()
    wait_for("far promoted", lambda: far.audio("promoted"), lambda v: v is True)
    promoted_as = far.page.evaluate("window.sohbet.app.primaryCreds.Attendee.AttendeeId")
    far.click("Unmute my mic")
    ada.click("Mute my mic")  # the host's 440 Hz goes: what the listener hears is far's voice
    hears(lis, 660)  # heard by the primary's listener, through the host's room
    hears(ada, 660)
    assert far.audio("session") == session  # the same WHIP session: promoted in place
    assert far.audio("sending") is True

    # The socket drops and comes back within the reconnect grace: the join reply carries both
    # credentials; the audio connection never went, so it stays promoted (nothing torn down).
    # (The page forgets the credentials first: what it holds after comes from the join reply.)
    far.page.evaluate("window.sohbet.app.primaryCreds = null; window.sohbet.dropSocket(300)")
    expect(far.page.locator("#notices")).to_contain_text("reconnected and caught up")
    resumed = wait_for(
        "the primary credentials from the join reply",
        lambda: far.page.evaluate(
            "window.sohbet.app.primaryCreds && window.sohbet.app.primaryCreds.Attendee.AttendeeId"
        ),
        lambda v: v is not None,
    )
    assert resumed == promoted_as
    assert far.audio("promoted") is True and far.audio("session") == session
    hears(lis, 660)

    ada.tile_action("far", "To audience")
    wait_for("far demoted", lambda: far.audio("promoted"), lambda v: v is False)
    silent(lis)
    assert far.audio("sending") is False and far.audio("session") == session
    ada.click("Unmute my mic")
    hears(far, 440)  # the replica connection goes on: the host is heard
    for person in (ada, lis, far):
        person.screenshot("replica-promotion")


def test_media_renewed_makes_the_page_join_the_new_meeting(people, stack) -> None:
    """Chime ended the meeting on its own; the space renewed it and broadcast `media.renewed`: the
    page joins again for new credentials and hears the stage in the new meeting."""
    name = f"Renewed {secrets.token_hex(3)}"
    ada = people("ada", hz=440)
    ada.create_space(name)
    expect(ada.page.locator("#audio-state")).to_contain_text("connected (speaker)")
    ada.click("Unmute my mic")
    lis = people("lis", hz=440)
    lis.join_from_list(name)
    hears(lis, 440)
    old = lis.page.evaluate("window.sohbet.app.mediaCreds.Meeting.MeetingId")
    stack.media.delete_meeting(old)  # as Chime's auto-end would: chime:MeetingEnded reaches the app
    for person in (ada, lis):
        wait_for(
            f"{person.name} in the new meeting",
            lambda p=person: p.page.evaluate("window.sohbet.app.mediaCreds.Meeting.MeetingId"),
            lambda m: m != old,
            timeout=10,
        )
    new = lis.page.evaluate("window.sohbet.app.mediaCreds.Meeting.MeetingId")
    assert stack.media.meeting_exists(new)
    hears(lis, 440, timeout=10)
    expect(lis.page.locator("#audio-state")).to_contain_text("connected (listener)")
