"""Evidence's pure parts: why a capture runs, chunk names and times, key layout (no AWS)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chalicelib import clients, config, evidence
from chalicelib.models import Space
from devstack.media.recorder import chunk_name


@pytest.fixture
def capture_all() -> Iterator[None]:
    with clients.override(settings=replace(config.from_environment(), capture_all_spaces=True)):
        yield


def space(recording: bool) -> Space:
    return Space("sp1", recording=recording)


@pytest.mark.parametrize(
    ("recording", "current", "add", "expected"),
    [
        (False, [], "report", ["report"]),
        (False, ["report"], None, ["report"]),
        (True, [], None, ["recording"]),
        (True, ["report"], None, ["report", "recording"]),
        (False, ["report", "recording"], None, ["report"]),  # recording off: that reason goes
        (False, ["recording"], None, []),  # nothing left: the capture ends
        (False, [], None, []),
    ],
)
def test_desired_reasons(recording: bool, current: list[str], add: str | None, expected: list[str]) -> None:
    assert evidence.desired_reasons(space(recording), current, add) == expected


def test_capture_all_spaces_is_always_a_reason(capture_all: None) -> None:
    assert evidence.desired_reasons(space(False), [], None) == ["all"]
    assert evidence.desired_reasons(space(True), ["report"], None) == ["report", "all", "recording"]


def test_chunk_names_carry_their_start_time_and_round_trip() -> None:
    at = datetime(2026, 12, 3, 6, 28, 5, 966_000, tzinfo=UTC)
    name = chunk_name(at.timestamp())
    assert name == "2026-12-03-06-28-05-966.mp4"
    assert evidence._chunk_start(f"capture/sp1/1/audio/{name}") == at
    assert evidence._chunk_start("capture/sp1/1/audio/whatever.mp4") is None


def test_key_layout() -> None:
    assert evidence.capture_prefix("sp1", 2) == "capture/sp1/2"
    assert evidence.media_prefix("sp1", 2) == "media/sp1/2"
