"""Real-browser fixtures: Debian's chromium driven by Playwright's Python driver.

Never `playwright install`: browser downloads are unreachable. The system binary's
headless mode is the full browser, so getUserMedia works, fed by a generated WAV
through Chromium's fake capture device (the flags are in ../shared/PLATFORM-NOTES.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .web_support import ARTIFACTS, Admin, Person

# Debian's chromium; CHROMIUM=/path/to/chrome picks another build of the real browser.
CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
INSTALL_HINT = (
    "`make test` installs it (as root: apt-get install -y chromium sox; otherwise run that with sudo)"
)

# Playwright 1.65's own --disable-features list (chromiumSwitches.ts): only the last
# --disable-features switch counts, so ours must repeat it, plus mDNS candidates off so
# that loopback host candidates reach the media server.
_PLAYWRIGHT_DISABLED = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
]
DISABLED_FEATURES = [*_PLAYWRIGHT_DISABLED, "WebRtcHideLocalIpsWithMdns"]


def chromium_args(tone_wav: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone_wav}",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-features=" + ",".join(DISABLED_FEATURES),
    ]


def _only_loopback() -> list[str]:
    """Network interfaces other than lo in this process's network namespace (not /sys/class/net:
    sysfs shows the namespace it was mounted in)."""
    return sorted(name for _, name in socket.if_nameindex() if name != "lo")


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing ({CHROMIUM}): the browser tests need it. {INSTALL_HINT}.")
    others = _only_loopback()
    if others:
        pytest.fail(
            "the browser tests run only in a loopback-only network namespace (tests/conftest.py "
            f"enters one when pytest runs as root); this one also has {others}"
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """tones(440) -> a 10 s mono 48 kHz sine WAV at that frequency, made once by sox."""
    sox = shutil.which("sox")
    if sox is None:
        pytest.fail(f"sox is missing: the browser tests make their microphone input with it. {INSTALL_HINT}.")
    folder = tmp_path_factory.mktemp("tones")
    made: dict[int, Path] = {}

    def tone(hz: int) -> Path:
        if hz not in made:
            path = folder / f"tone-{hz}.wav"
            synth = ["synth", "10", "sine", str(hz), "vol", "0.5"]
            subprocess.run([sox, "-n", "-r", "48000", "-c", "1", "-b", "16", str(path), *synth], check=True)
            made[hz] = path
        return made[hz]

    return tone


# Package scope, not session: Playwright's sync driver keeps an asyncio loop running in this
# thread while it lives, and the tests after this package call asyncio.run().
@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser_with_tone(playwright_driver: Any, chromium: Path, tones: Callable[[int], Path]) -> Iterator[Any]:
    """browser_with_tone(hz): a headless Chromium whose fake microphone plays a hz sine (one per hz)."""
    browsers: dict[int, Any] = {}

    def launch(hz: int) -> Any:
        if hz not in browsers:
            browsers[hz] = playwright_driver.chromium.launch(
                executable_path=str(chromium), headless=True, args=chromium_args(tones(hz))
            )
        return browsers[hz]

    yield launch
    for browser in browsers.values():
        browser.close()


@pytest.fixture
def people(stack: Any, browser_with_tone: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """people(name, hz=440, label=name): a Person on the web client at the stack's `/`, signed in as `name`.

    Each person has their own browser context (own storage) in the browser whose mic plays hz.
    At the end every page is saved as artifacts/browser/<test>-<label>.png, and every WebSocket
    frame each page sent or received is checked against docs/asyncapi.yaml.
    """
    made: list[Person] = []

    def person(name: str, hz: int = 440, label: str | None = None) -> Person:
        context = browser_with_tone(hz).new_context(viewport={"width": 900, "height": 1000})
        p = Person(name, context.new_page(), stack.base_url)
        p.label = label or name  # the screenshot's name: stable when `name` is made unique
        p.sign_in()
        made.append(p)
        return p

    yield person
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for p in made:
        p.page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{p.label}.png"), full_page=True)
        p.page.context.close()
    for p in made:
        assert not p.page_errors, f"{p.name}'s page threw: {p.page_errors}"
        assert p.check_protocol() > 0, f"{p.name}'s page exchanged no WebSocket frames"


@pytest.fixture
def admins(stack: Any, browser_with_tone: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """admins(name, admin=True, at="", label=name): an Admin on the console at the stack's
    `/admin/` (hash `at`), signed in as dev user `name`, in the admins group unless admin=False.
    Shares the 440 Hz browser with `people`; saved as artifacts/browser/<test>-admin-<label>.png
    at the end."""
    made: list[Admin] = []

    def admin(name: str, admin: bool = True, at: str = "", label: str | None = None) -> Admin:
        context = browser_with_tone(440).new_context(viewport={"width": 1100, "height": 1000})
        a = Admin(name, context.new_page(), stack.base_url)
        a.label = label or name
        made.append(a)
        a.sign_in(admin=admin, at=at)
        return a

    yield admin
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for a in made:
        a.page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-admin-{a.label}.png"), full_page=True)
        a.page.context.close()
    for a in made:
        assert not a.page_errors, f"{a.name}'s console threw: {a.page_errors}"
