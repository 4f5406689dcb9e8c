"""Reminders and notifications in the web client: set a reminder from the list, hear the start."""

from __future__ import annotations

import secrets

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_remind_me_then_the_start_shows_in_the_inbox(people) -> None:
    gul, ece = people("gul"), people("ece")
    name = f"Later {secrets.token_hex(3)}"
    form = gul.page.locator("#create-space")
    form.get_by_label("Title").fill(name)
    tomorrow = gul.page.evaluate(
        "(() => { const d = new Date(Date.now() + 86400000); d.setSeconds(0, 0);"
        " return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); })()"
    )
    form.get_by_label("Schedule for later (optional)").fill(tomorrow)
    form.get_by_role("button", name="Create").click()
    expect(gul.page.locator("#space-list li", has_text=name)).to_contain_text("0 reminders")

    # ece finds it among the scheduled spaces and asks to be reminded
    finder = ece.page.locator("#find-spaces")
    finder.get_by_label("Show").select_option("scheduled")
    finder.get_by_role("button", name="Show").click()
    item = ece.page.locator("#space-list li", has_text=name)
    item.get_by_role("button", name="Remind me").click()
    expect(item).to_contain_text("1 reminders")
    expect(item.get_by_role("button", name="Reminder set ✓ (clear)")).to_be_visible()
    expect(ece.page.locator("#reminder-list li", has_text=name)).to_contain_text("starts")

    # the host starts it: ece's page is told at once, unread, and can join from there
    gul.page.locator("#space-list li", has_text=name).get_by_role("button", name="Start now").click()
    expect(gul.page.locator("#room-title")).to_have_text(name)
    told = ece.page.locator("#notification-list li", has_text=f"gul is live: {name}")
    expect(told).to_have_class("unread", timeout=15_000)
    expect(ece.page.locator("#unread")).to_have_text("1 new")
    ece.page.get_by_role("button", name="Mark all read").click()
    expect(ece.page.locator("#unread")).to_have_text("0 new")
    expect(told).to_have_class("read")
    told.get_by_role("button", name="Join").click()
    expect(ece.page.locator("#room-title")).to_have_text(name)
    assert ece.page_errors == [] and gul.page_errors == []
    assert ece.check_protocol() > 0
