"""The web client's control plane in a real browser: every step through the page, as a user."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

from .web_support import wait_for

pytestmark = pytest.mark.browser


def title(prefix: str) -> str:
    return f"{prefix} {secrets.token_hex(3)}"


def test_hand_raise_approve_mute_unmute_remove(people) -> None:
    ada = people("ada")
    name = title("Web jam")
    ada.create_space(name)
    bob = people("bob")
    bob.join_from_list(name)
    expect(bob.page.locator("#room-meta")).to_contain_text("you are listener")

    expect(ada.page.locator("#listener-count")).to_have_text("1")  # coalesced listeners.count

    hand = ada.page.locator('#hands li[data-user="bob"]')
    bob.click("Raise my hand")
    expect(hand).to_be_visible()
    bob.click("Lower my hand")
    expect(hand).to_have_count(0)
    bob.click("Raise my hand")
    hand.get_by_role("button", name="Decline").click()
    expect(bob.page.locator("#notices")).to_contain_text("Your request to speak was declined.")
    expect(bob.page.get_by_role("button", name="Raise my hand")).to_be_visible()
    bob.click("Raise my hand")
    hand.get_by_role("button", name="Bring on stage").click()

    expect(bob.me_on_stage()).to_have_attribute("data-role", "speaker")
    expect(ada.tile("bob")).to_have_attribute("data-role", "speaker")
    expect(hand).to_have_count(0)
    expect(bob.me_on_stage()).to_have_attribute("data-muted-by", "self")  # on stage muted, as in X Spaces
    bob.click("Unmute my mic")
    expect(ada.tile("bob")).to_have_attribute("data-muted", "false")

    ada.tile_action("bob", "Mute")
    expect(bob.me_on_stage()).to_have_attribute("data-muted-by", "host")
    expect(bob.me_on_stage()).to_contain_text("muted by a host")
    expect(ada.tile("bob")).to_contain_text("muted by a host")

    bob.click("Unmute my mic")  # only the speaker unmutes
    expect(ada.tile("bob")).to_have_attribute("data-muted", "false")
    bob.click("Mute my mic")
    expect(ada.tile("bob")).to_have_attribute("data-muted-by", "self")
    bob.click("Unmute my mic")

    ada.tile_action("bob", "Remove")
    expect(bob.page.locator("#removed")).to_have_text("A moderator removed you from this space.")
    expect(ada.tile("bob")).to_have_count(0)
    expect(bob.page.get_by_role("button", name="Back to spaces")).to_be_visible()


def test_a_refused_command_says_why(people) -> None:
    ada = people("ada")
    name = title("Invite only")
    ada.create_space(name, speak_policy="invited")
    cem = people("cem")
    cem.join_from_list(name, search=True)

    cem.click("Raise my hand")
    expect(cem.alert()).to_be_visible()
    expect(cem.alert()).to_contain_text("Raising your hand was refused")
    expect(cem.alert().locator("code")).to_have_text("not_allowed")
    expect(cem.alert()).to_contain_text("in this space only invited people can speak")

    # The host invites instead; the listener accepts from the page.
    moderation = ada.page.locator("#mod-user")
    moderation.get_by_label("User").fill("cem")
    moderation.get_by_role("button", name="Invite to speak").click()
    expect(cem.page.locator("#invite")).to_contain_text("ada invites you to speak")
    cem.click("Decline")
    expect(ada.page.locator("#notices")).to_contain_text("cem declined the invitation to speak.")
    moderation.get_by_label("User").fill("cem")
    moderation.get_by_role("button", name="Invite to speak").click()
    cem.click("Accept")
    expect(cem.me_on_stage()).to_have_attribute("data-role", "speaker")
    expect(cem.alert()).to_be_hidden()


def test_settings_reactions_cohost_and_end(people, stack, settings) -> None:
    # Room events through the broadcast tier: published once, received over AppSync Events.
    settings(**stack.broadcast_env(), BROADCAST_THRESHOLD="0")
    ada = people("ada")
    name = title("Settings")
    ada.create_space(name)
    dan = people("dan")
    dan.join_from_list(name)
    dan.click("Raise my hand")
    ada.page.locator('#hands li[data-user="dan"]').get_by_role("button", name="Bring on stage").click()
    expect(ada.tile("dan")).to_have_attribute("data-role", "speaker")

    ada.tile_action("dan", "Make co-host")
    expect(dan.me_on_stage()).to_have_attribute("data-role", "cohost")
    expect(dan.page.locator("#moderation")).to_be_visible()  # co-hosts moderate
    expect(dan.page.locator("#settings")).to_be_hidden()  # only the host changes settings

    settings = ada.page.locator("#settings")
    settings.get_by_label("Title").fill(name + " (renamed)")
    settings.get_by_role("button", name="Save settings").click()
    expect(dan.page.locator("#room-title")).to_have_text(name + " (renamed)")

    dan.page.get_by_role("button", name="react 🔥").click()
    # counted into the next `reactions` event (one per second at most), seen by everyone
    expect(ada.page.locator("#reaction-feed")).to_contain_text("🔥 dan", timeout=20_000)
    expect(ada.page.locator("#reaction-counts")).to_contain_text("🔥 1")
    expect(dan.page.locator("#reaction-counts")).to_contain_text("🔥 1", timeout=20_000)

    ada.tile_action("dan", "Remove co-host")
    expect(dan.me_on_stage()).to_have_attribute("data-role", "speaker")
    expect(dan.page.locator("#moderation")).to_be_hidden()
    ada.tile_action("dan", "To audience")
    expect(dan.me_on_stage()).to_have_count(0)
    expect(dan.page.locator("#room-meta")).to_contain_text("you are listener")

    ada.click("End the space for everyone")
    expect(dan.page.locator("#ended")).to_have_text("The host ended this space.")
    expect(ada.page.locator("#ended")).to_be_visible()
    came = {e["event"] for e in dan.broadcast_events()}
    assert {"stage.changed", "settings.changed", "reactions", "space.ended"} <= came, came


def test_the_host_records_and_everyone_sees_the_badge(people) -> None:
    ada = people("ada")
    name = title("Recorded")
    ada.create_space(name)
    eve = people("eve")
    eve.join_from_list(name)
    badge = eve.page.locator("#recording-badge")
    expect(badge).to_have_count(0)
    expect(eve.page.get_by_role("button", name="Record this space")).to_be_hidden()  # host only
    ada.click("Record this space")
    expect(badge).to_have_text("● REC")
    expect(ada.page.locator("#recording-badge")).to_be_visible()
    expect(eve.page.locator("#notices")).to_contain_text("The host started recording this space.")
    ada.click("Stop recording")
    expect(badge).to_have_count(0)
    # captions: the space has no language, and the local recognizer knows English only
    ada.click("Turn captions on")
    expect(ada.page.locator("#alert")).to_contain_text("captions are unavailable")
    expect(eve.page.locator("#captions-badge")).to_have_count(0)
    ada.click("End the space for everyone")
    expect(eve.page.locator("#ended")).to_be_visible()


def test_captions_on_and_off_for_everyone(people) -> None:
    ada = people("ada")
    name = title("Captioned")
    ada.create_space(name, lang="en")
    eve = people("eve")
    eve.join_from_list(name)
    expect(eve.page.locator("#captions")).to_be_hidden()
    ada.click("Turn captions on")
    expect(eve.page.locator("#captions-badge")).to_have_text("CC")
    expect(eve.page.locator("#captions")).to_be_visible()  # what is said shows here (a tone says nothing)
    ada.click("Turn captions off")
    expect(eve.page.locator("#captions-badge")).to_have_count(0)
    expect(eve.page.locator("#captions")).to_be_hidden()
    ada.click("End the space for everyone")


def test_a_click_in_progress_survives_an_event_that_redraws_the_room(people) -> None:
    """Each event redraws the room; a control whose markup did not change must stay the same
    element, or a press (mouse down) followed by an event and the release lands on a button
    that is no longer there and the click is lost."""
    ada = people("ada")
    name = title("Pressed")
    ada.create_space(name, lang="en")
    box = ada.page.get_by_role("button", name="Turn captions on", exact=True).bounding_box()
    assert box is not None
    ada.page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    ada.page.mouse.down()
    eve = people("eve")
    eve.join_from_list(name)
    expect(ada.page.locator("#listener-count")).to_have_text("1")  # ada's room was redrawn
    ada.page.mouse.up()
    expect(eve.page.locator("#captions-badge")).to_have_text("CC")
    ada.click("End the space for everyone")


def test_report_and_block_from_the_room(people) -> None:
    ada = people("ada")
    name = title("Safety")
    ada.create_space(name)
    eve = people("eve")
    eve.join_from_list(name)

    eve.page.locator("#safety summary").click()
    report = eve.page.locator("#report")
    report.get_by_label("Who").fill("ada")
    report.get_by_label("Why").select_option("spam")
    report.get_by_role("button", name="Report").click()
    expect(eve.page.locator("#notices")).to_contain_text("Report sent")

    ada.page.locator("#safety summary").click()
    block = ada.page.locator("#block")
    block.get_by_label("User").fill("eve")
    block.get_by_role("button", name="Block").click()
    expect(ada.page.locator("#notices")).to_contain_text("You blocked eve")
    # Blocked by the host: eve is out, and cannot come back.
    expect(eve.page.locator("#removed")).to_be_visible()
    eve.click("Back to spaces")
    eve.page.locator("#find-spaces").get_by_role("button", name="Show").click()
    eve.page.locator("#space-list li", has_text=name).get_by_role("button", name="Join").click()
    expect(eve.alert().locator("code")).to_have_text("not_allowed")


def test_reconnect_and_seq_gap_resync(people) -> None:
    ada = people("ada")
    name = title("Flaky network")
    ada.create_space(name)
    fay = people("fay")
    fay.join_from_list(name)

    # The socket drops; while it is away the host renames the space (fay misses the event).
    fay.page.evaluate("window.sohbet.dropSocket(1500)")
    expect(fay.page.locator("#connection")).to_contain_text("reconnecting")
    settings = ada.page.locator("#settings")
    settings.get_by_label("Title").fill(name + " v2")
    settings.get_by_role("button", name="Save settings").click()
    expect(ada.page.locator("#room-title")).to_have_text(name + " v2")
    expect(fay.page.locator("#connection")).to_have_text("online", timeout=5000)
    expect(fay.page.locator("#room-title")).to_have_text(name + " v2")
    expect(fay.page.locator("#notices")).to_contain_text("reconnected and caught up")
    assert fay.page.evaluate("window.sohbet.socket.reconnects") == 1

    # A broadcast lost in transit: the next one shows a seq gap and the page asks for space.sync.
    fay.page.evaluate(
        "(() => { const s = window.sohbet.socket, id = window.sohbet.app.room.spaceId;"
        " s.lastSeq.set(id, s.lastSeq.get(id) - 1); })()"
    )
    ada.page.get_by_role("button", name="react 👏").click()
    wait_for("fay's resyncs", lambda: fay.page.evaluate("window.sohbet.socket.resyncs"), lambda n: n == 1)
    assert fay.page.evaluate("window.sohbet.socket.gaps") == 1
    expect(fay.page.locator("#notices")).to_contain_text("caught up with a fresh snapshot")


def test_schedule_then_start(people) -> None:
    gul = people("gul")
    name = title("Later")
    form = gul.page.locator("#create-space")
    form.get_by_label("Title").fill(name)
    form.get_by_label("Schedule for later (optional)").fill("2099-01-01T10:00")  # past the 30-day limit
    form.get_by_role("button", name="Create").click()
    expect(gul.alert().locator("code")).to_have_text("bad_request")
    tomorrow = gul.page.evaluate(
        "(() => { const d = new Date(Date.now() + 86400000); d.setSeconds(0, 0);"
        " return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); })()"
    )
    form.get_by_label("Schedule for later (optional)").fill(tomorrow)
    form.get_by_role("button", name="Create").click()
    item = gul.page.locator("#space-list li", has_text=name)
    expect(item).to_contain_text("scheduled")
    finder = gul.page.locator("#find-spaces")
    finder.get_by_label("Show").select_option("creator")
    finder.get_by_role("button", name="Show").click()
    expect(item).to_contain_text("scheduled")
    item.get_by_role("button", name="Start now").click()
    expect(gul.page.locator("#room-title")).to_have_text(name)
    expect(gul.me_on_stage()).to_have_attribute("data-role", "host")


def test_sign_in_with_a_pasted_token(stack, browser_with_tone) -> None:
    context = browser_with_tone(440).new_context()
    page = context.new_page()
    try:
        page.goto(stack.base_url + "/")
        box = page.get_by_label("Or paste a token")
        box.fill("not-a-jwt")
        page.get_by_role("button", name="Use this token").click()
        expect(page.locator("#alert code")).to_have_text("unauthorized")
        box.fill(stack.mint_token("ivy"))
        page.get_by_role("button", name="Use this token").click()
        expect(page.locator("#whoami")).to_have_text("signed in as ivy")
        expect(page.locator("#connection")).to_have_text("online")
        expect(page.locator("#alert")).to_be_hidden()
    finally:
        context.close()
