"""The admin console (/admin/) in a real browser, with the web client on the other side."""

from __future__ import annotations

import secrets
import urllib.request

import numpy as np
import pytest
from conftest import admin_token, http, live_space, wait_for_case
from playwright.sync_api import expect

from devstack.media.mixer import SAMPLE_RATE
from devstack.media.recorder import decode

from .web_support import wait_for

pytestmark = pytest.mark.browser


def dominant(pcm: np.ndarray) -> float:
    """The loudest frequency of a recording (Hz)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float32) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[int(np.argmax(spectrum[1:])) + 1])


def name(prefix: str) -> str:
    # Fresh users: a suspension lasts a day on the session's stack.
    return f"{prefix}{secrets.token_hex(3)}"


def test_report_from_the_room_then_suspend_cuts_the_user_off(stack, people, admins) -> None:
    ada = people(name("ada"), label="ada")
    title = f"Moderated {secrets.token_hex(3)}"
    ada.create_space(title)
    bob = people(name("bob"), label="bob")
    bob.join_from_list(title)
    bob.click("Raise my hand")
    hand = ada.page.locator(f'#hands li[data-user="{bob.name}"]')
    hand.get_by_role("button", name="Bring on stage").click()
    expect(ada.tile(bob.name)).to_have_attribute("data-role", "speaker")
    bob.click("Unmute my mic")  # his microphone plays a 440 Hz tone
    expect(ada.tile(bob.name)).to_have_attribute("data-muted", "false")

    # Given the host reports bob from his tile on stage
    ada.tile_action(bob.name, "Report")
    report = ada.page.locator("#report")
    expect(report.get_by_label("Who")).to_have_value(bob.name)
    report.get_by_label("Why").select_option("violence")
    report.get_by_label("Note").fill("threatening a listener")
    report.get_by_role("button", name="Report").click()
    expect(ada.page.locator("#notices")).to_contain_text("Report sent")
    case = wait_for_case(stack, "user", bob.name, 1)
    # The report started capturing the space's audio: ~5 s chunks while it is live.
    wait_for(
        "the first evidence chunk",
        lambda: http(stack, "GET", f"/admin/cases/{case['id']}/evidence", token=admin_token(stack))[1],
        lambda body: bool(body["items"]),
        timeout=20,
    )

    # Then the admin finds the case at the top of the queue (violence is high priority)
    root = admins("root")
    first = root.page.locator("#cases tbody tr").first
    expect(first).to_have_attribute("data-case", case["id"])
    expect(first).to_contain_text("high")
    expect(first).to_contain_text(f"user {bob.name}")
    root.screenshot("console-queue")
    first.get_by_role("link", name="Open").click()

    # And the case shows the report and the stage at report time
    expect(root.page.locator("#case-title")).to_have_text(f"Case about user {bob.name}")
    shown = root.page.locator(f'#reports li[data-report="{case["latest_report_id"]}"]')
    expect(shown).to_contain_text(f"{ada.name} reported user {bob.name} for violence")
    expect(shown.locator("blockquote")).to_have_text("threatening a listener")
    expect(shown).to_contain_text(f"“{title}” hosted by {ada.name}")
    stage = shown.locator(".stage-at-report tbody")
    expect(stage.locator("tr", has_text=ada.name)).to_contain_text("host")
    expect(stage.locator("tr", has_text=bob.name)).to_contain_text("speaker")
    expect(root.page.locator("#case-actions")).to_contain_text("No admin has acted on this case yet.")

    # And its evidence plays in the page: the space's mix since the report, bob's tone in it
    expect(root.page.locator("#evidence-status")).to_have_attribute("data-status", "capturing")
    player = root.page.locator("#evidence audio").first
    player.evaluate("a => a.play()")
    wait_for(
        "the evidence playing",
        lambda: player.evaluate("a => [a.currentTime, a.error && a.error.code]"),
        lambda v: v[0] > 0.5 and v[1] is None,
        timeout=8,
    )
    with urllib.request.urlopen(player.get_attribute("src"), timeout=10) as response:  # presigned: no token
        assert abs(dominant(decode(response.read())) - 440) < 3
    root.screenshot("console-case-with-evidence")
    before = root.page.locator("#evidence audio").count()
    wait_for(
        "a second evidence part",
        lambda: len(
            http(stack, "GET", f"/admin/cases/{case['id']}/evidence", token=admin_token(stack))[1]["items"]
        ),
        lambda n: n > before,
        timeout=20,
    )
    root.page.get_by_role("button", name="Fresh links and new parts").click()
    wait_for("the new part in the page", root.page.locator("#evidence audio").count, lambda n: n > before)

    # When the admin suspends bob for a day
    root.page.locator("#case-action").get_by_label("Suspend for").select_option("86400")
    root.act("Suspend", "threats on stage")
    expect(root.page.locator("#case-done")).to_contain_text("Suspend applied: the case is closed")
    expect(root.page.locator("#case-status")).to_have_text("closed")
    done = root.page.locator("#case-actions li")
    expect(done).to_have_count(1)
    expect(done).to_contain_text("Suspend by root")
    expect(done).to_contain_text("for 1 day")

    # Then bob's page is cut off live, says so, and does not reconnect
    expect(bob.page.locator("#cut-off")).to_have_text(
        "A moderator suspended your account: you were cut off from this space."
    )
    expect(bob.page.locator("#suspended")).to_contain_text("A moderator suspended your account until")
    expect(bob.page.locator("#connection")).to_have_text("suspended")
    expect(ada.tile(bob.name)).to_have_count(0)
    assert bob.page.evaluate("window.sohbet.socket.open") is False

    # And the audit log shows it
    root.page.get_by_role("link", name="Audit log").click()
    root.filter("#audit-filters", target_type="user", target_id=bob.name)
    row = root.page.locator("#audit-log tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Suspend")
    expect(row).to_contain_text("root")
    expect(row).to_contain_text("threats on stage")
    expect(row).to_contain_text("for 1 day")
    root.screenshot("console-audit")
    bob.screenshot("console-cut-off")

    # A closed case about a user still offers lifting the suspension; lifting twice is refused
    row.get_by_role("link", name="case").click()
    expect(root.page.locator("#case-action-note")).to_have_text(
        "This case is closed (Suspend). A suspension can still be lifted."
    )
    expect(root.page.locator("#action-buttons button")).to_have_text(["Lift suspension"])
    root.act("Lift suspension", "appeal accepted")
    expect(root.page.locator("#case-done")).to_contain_text("Lift suspension applied")
    expect(root.page.locator("#case-actions li")).to_have_count(2)
    root.act("Lift suspension", "again")
    expect(root.alert()).to_contain_text("Lift suspension was refused: conflict — that user is not suspended")
    expect(root.page.locator("#conflict")).to_be_hidden()  # a refusal, not another admin's action
    status, _ = http(stack, "POST", "/ws/ticket", token=stack.mint_token(bob.name))
    assert status == 201  # bob may connect again


def _space_case(stack, category: str) -> tuple[str, dict]:
    """A live space reported by its own host: an open case about the space."""
    host = name("hal")
    space = live_space(stack, host, f"Reported {secrets.token_hex(2)}")
    status, body = http(
        stack, "POST", "/reports", {"space_id": space, "category": category}, stack.mint_token(host)
    )
    assert status == 202, body
    return space, wait_for_case(stack, "space", space, 1)


def test_two_admins_on_one_case_and_paging(stack, admins) -> None:
    _, older = _space_case(stack, "impersonation")
    space, newer = _space_case(stack, "impersonation")

    # Paging through the queue, one case a page: newest first within a priority
    una = admins(name("una"), label="una")
    una.filter("#case-filters", category="impersonation", target_type="space", limit="1")
    rows = una.page.locator("#cases tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_have_attribute("data-case", newer["id"])
    una.page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_attribute("data-case", older["id"])
    expect(una.page.locator("#cases-pager")).to_contain_text("page 2")
    una.page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_attribute("data-case", newer["id"])

    # Two admins open the same case (the second by its link)
    rows.get_by_role("link", name="Open").click()
    expect(una.page.locator("#case-version")).to_have_text(str(newer["version"]))
    vic = admins(name("vic"), at=f"#case/{newer['id']}", label="vic")
    expect(vic.page.locator("#case-title")).to_have_text(f"Case about space {space}")
    expect(vic.page.locator("#case-action").get_by_role("button", name="Warn")).to_have_count(0)  # users only

    # The first dismisses; the second, still looking at the old version, tries to end the space
    una.act("Dismiss", "a parody account, allowed")
    expect(una.page.locator("#case-done")).to_contain_text("Dismiss applied: the case is closed")
    vic.act("End the space", "impersonating a brand")
    conflict = vic.page.locator("#conflict")
    expect(conflict).to_contain_text("Someone else acted on this case first")
    expect(conflict).to_contain_text(f"{una.name} chose Dismiss")
    expect(conflict).to_contain_text("your End the space was not applied")
    expect(conflict).to_contain_text(f"The case is now closed (version {newer['version'] + 1})")
    expect(vic.page.locator("#case-status")).to_have_text("closed")  # the new state, shown
    expect(vic.page.locator("#case-actions li")).to_have_count(1)
    expect(vic.page.locator("#action-buttons button")).to_have_count(0)  # nothing left to do to it
    status, space_now = http(stack, "GET", f"/spaces/{space}", token=stack.mint_token(una.name))
    assert status == 200 and space_now["state"] == "live"  # the losing action did nothing
    vic.screenshot("console-conflict")

    # vic dismisses the other case; the audit log pages one entry at a time, newest first
    vic.page.goto(f"{stack.base_url}/admin/#case/{older['id']}")
    expect(vic.page.locator("#case-version")).to_have_text(str(older["version"]))
    vic.act("Dismiss", "duplicate")
    expect(vic.page.locator("#case-done")).to_be_visible()
    vic.page.get_by_role("link", name="Audit log").click()
    vic.filter("#audit-filters", limit="1")
    audit = vic.page.locator("#audit-log tbody tr")
    expect(audit).to_have_count(1)
    expect(audit).to_contain_text(f"{vic.name}")
    expect(audit.get_by_role("link", name="case")).to_have_attribute("href", f"#case/{older['id']}")
    vic.page.get_by_role("button", name="Next page").click()
    expect(audit.get_by_role("link", name="case")).to_have_attribute("href", f"#case/{newer['id']}")
    expect(audit).to_contain_text(una.name)


def test_someone_outside_the_admins_group_gets_the_not_an_admin_page(stack, admins) -> None:
    eve = admins(name("eve"), admin=False, label="eve")
    expect(eve.page.locator("#not-admin-title")).to_have_text("Not an admin")
    text = eve.page.locator("#not-admin-text")
    expect(text).to_contain_text(f"You are signed in as {eve.name}, in no group, and you are not an admin.")
    expect(text.locator("code")).to_have_text("not_allowed")
    expect(eve.page.locator("#nav")).to_be_hidden()
    expect(eve.page.locator("#queue")).to_be_hidden()
    # The page decides nothing: its deep links get the server's same refusal.
    eve.page.goto(f"{stack.base_url}/admin/#audit")
    expect(eve.page.locator("#not-admin-title")).to_be_visible()
    status, body = http(stack, "GET", "/admin/audit", token=stack.mint_token(eve.name))
    assert (status, body["code"]) == (403, "not_allowed")


def test_the_case_transcript_section_shows_the_lines_of_the_evidence_answer(stack, admins) -> None:
    """The console's transcript section, fed the evidence answer's `transcript` (its shape in
    docs/openapi.yaml; tests/e2e/audio/test_transcript.py makes real ones)."""
    ada = admins(name("ada"), label="transcript")
    ada.page.evaluate(
        """async () => {
          const V = await import("../app/admin/view.js");
          const line = (at, user_id, text) => ({at, ended_at: at, user_id, attendee_id: null, text});
          const answer = {transcript: [
            line("2026-01-01T10:00:30.000000Z", null, "hello world"),
            line("2026-01-01T10:05:00.000000Z", "u1", "<b>later</b>"),
          ]};
          const detail = {last_seen_at: "2026-01-01T10:00:00.000Z"};
          const box = document.createElement("div");  // beside the console, which keeps running
          box.innerHTML = `<div id="t">${V.transcript(answer, detail)}</div>
            <div id="n">${V.transcript({transcript: []}, detail)}</div>`;
          document.body.append(box);
        }"""
    )
    items = ada.page.locator("#t li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_class("near")  # within two minutes of the report
    expect(items.nth(0)).to_contain_text("hello world")
    expect(items.nth(1)).not_to_have_class("near")
    expect(items.nth(1)).to_contain_text("u1 <b>later</b>")  # escaped, not markup
    expect(ada.page.locator("#n #no-transcript")).to_have_text("No transcript for this case.")
