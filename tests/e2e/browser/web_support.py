"""A person using the web client: clicks and reads the page the way a user would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncapi_check import validate_command, validate_server_message
from playwright.sync_api import expect

ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts" / "browser"
TIMEOUT_MS = 10_000


class Person:
    def __init__(self, name: str, page: Any, base_url: str) -> None:
        self.name = name
        self.label = name
        self.page = page
        self.base_url = base_url
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        # Every WebSocket frame the page sends and receives, checked against docs/asyncapi.yaml.
        self.sent: list[str | bytes] = []
        self.received: list[str | bytes] = []
        # Frames of the broadcast tier's socket (AppSync Events' realtime protocol).
        self.broadcast_received: list[str | bytes] = []
        page.on("websocket", self._watch)
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)

    def _watch(self, ws: Any) -> None:
        if ws.url.split("?")[0].endswith("/event/realtime"):
            ws.on("framereceived", lambda payload: self.broadcast_received.append(payload))
            return
        ws.on("framesent", lambda payload: self.sent.append(payload))
        ws.on("framereceived", lambda payload: self.received.append(payload))

    def broadcast_events(self) -> list[dict[str, Any]]:
        """The room events that came through the broadcast tier (the `event` of each data message)."""
        frames = [json.loads(raw) for raw in self.broadcast_received]
        return [json.loads(f["event"]) for f in frames if f.get("type") == "data"]

    def check_protocol(self) -> int:
        """AssertionError unless every frame matched the AsyncAPI document; returns how many."""
        for raw in self.sent:
            validate_command(json.loads(raw))
        for raw in self.received:
            validate_server_message(json.loads(raw))
        for event in self.broadcast_events():
            validate_server_message(event)
        return len(self.sent) + len(self.received)

    # -- navigation ----------------------------------------------------------

    def sign_in(self) -> None:
        # noconfirm: no confirm() before ending a space; rawmic: the tones must not be
        # treated as noise by the browser's voice processing.
        self.page.goto(self.base_url + "/?noconfirm&rawmic=1")
        self.page.get_by_label("User name").fill(self.name)
        self.page.get_by_role("button", name="Sign in as this dev user").click()
        expect(self.page.locator("#connection")).to_have_text("online")
        expect(self.page.locator("#lobby")).to_be_visible()

    def create_space(self, title: str, speak_policy: str = "everyone", lang: str | None = None) -> str:
        """Create a live space from the lobby form; the page joins it as host. Returns its id."""
        form = self.page.locator("#create-space")
        form.get_by_label("Title").fill(title)
        form.get_by_label("Who may ask to speak").select_option(speak_policy)
        if lang:
            form.get_by_label("Language").fill(lang)
        form.get_by_role("button", name="Create").click()
        expect(self.page.locator("#room-title")).to_have_text(title)
        expect(self.me_on_stage()).to_have_attribute("data-role", "host")
        return self.space_id()

    def join_from_list(self, title: str, search: bool = False) -> None:
        finder = self.page.locator("#find-spaces")
        if search:
            finder.get_by_label("Show").select_option("search")
            finder.get_by_label("Search text or user").fill(title.split()[-1].upper())  # any case
        finder.get_by_role("button", name="Show").click()
        self.page.locator("#space-list li", has_text=title).get_by_role("button", name="Join").click()
        expect(self.page.locator("#room-title")).to_have_text(title)

    def space_id(self) -> str:
        return str(self.page.evaluate("window.sohbet.app.room.spaceId"))

    # -- the room ------------------------------------------------------------

    def click(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()

    def tile(self, user: str) -> Any:
        return self.page.locator(f'#stage li[data-user="{user}"]')

    def me_on_stage(self) -> Any:
        return self.tile(self.name)

    def tile_action(self, user: str, name: str) -> None:
        self.tile(user).get_by_role("button", name=name, exact=True).click()

    def alert(self) -> Any:
        return self.page.locator("#alert")

    def screenshot(self, label: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{label}-{self.label}.png"), full_page=True)

    def audio(self, expression: str) -> Any:
        return self.page.evaluate(f"window.sohbetAudio.{expression}")


def wait_for(what: str, probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    """Poll `probe` until `ok(value)`; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not ok(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout} s")
        time.sleep(0.05)
        value = probe()
    return value


class Admin:
    """Someone using the admin console at /admin/ (signed in as a dev user, in the admins group or not)."""

    def __init__(self, name: str, page: Any, base_url: str) -> None:
        self.name = name
        self.label = name
        self.page = page
        self.base_url = base_url
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.set_default_timeout(TIMEOUT_MS)

    def sign_in(self, admin: bool = True, at: str = "") -> None:
        self.page.goto(f"{self.base_url}/admin/{at}")
        form = self.page.locator("#dev-signin")
        form.get_by_label("User name").fill(self.name)
        form.get_by_label("in the admins group").set_checked(admin)
        form.get_by_role("button", name="Sign in as this dev user").click()
        expect(self.page.locator("#whoami")).to_have_text(f"signed in as {self.name}")

    def alert(self) -> Any:
        return self.page.locator("#alert")

    def filter(self, form_id: str, **fields: str) -> None:
        """Fill a filter form (#case-filters, #audit-filters) by field name, then press Show."""
        form = self.page.locator(form_id)
        for name, value in fields.items():
            box = form.locator(f'[name="{name}"]')
            if box.evaluate("e => e.tagName") == "SELECT":
                box.select_option(value)
            else:
                box.fill(value)
        form.get_by_role("button", name="Show").click()

    def act(self, action: str, reason: str) -> None:
        form = self.page.locator("#case-action")
        form.get_by_label("Reason").fill(reason)
        form.get_by_role("button", name=action, exact=True).click()

    def screenshot(self, label: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{label}-admin-{self.label}.png"), full_page=True)
