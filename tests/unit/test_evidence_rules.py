"""Evidence's pure parts: why a capture runs, chunk names and times, key layout (no AWS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

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


# -- the transcript around the report -------------------------------------------------------


def _event(start_ms: int, text: str, *, partial: bool = False, user: str | None = None) -> dict[str, Any]:
    items = (
        [{"type": "pronunciation", "attendee": {"attendeeId": "a1", "externalUserId": user}}] if user else []
    )
    return {
        "transcript": {
            "results": [
                {
                    "resultId": str(start_ms),
                    "isPartial": partial,
                    "startTimeMs": start_ms,
                    "endTimeMs": start_ms + 900,
                    "alternatives": [{"transcript": text, "items": items}],
                }
            ]
        }
    }


def test_transcript_lines_keep_final_results_with_their_speaker_and_skip_the_rest() -> None:
    t0 = 1_700_000_000_000
    body = "\n".join(
        json.dumps(e)
        for e in (
            {"status": {"type": "started", "eventTimeMs": t0}},
            _event(t0, "hello wor", partial=True, user="u1"),
            _event(t0, "hello world", user="u1"),
            _event(t0 + 2000, "   "),
            _event(t0 + 3000, "no speaker known"),
        )
    )
    lines = evidence.transcript_lines(body + '\n{"torn')
    assert lines == [
        {
            "at": "2023-11-14T22:13:20.000000Z",
            "ended_at": "2023-11-14T22:13:20.900000Z",
            "user_id": "u1",
            "attendee_id": "a1",
            "text": "hello world",
        },
        {
            "at": "2023-11-14T22:13:23.000000Z",
            "ended_at": "2023-11-14T22:13:23.900000Z",
            "user_id": None,
            "attendee_id": None,
            "text": "no speaker known",
        },
    ]
    assert evidence.transcript_lines("") == [] and evidence.transcript_lines("not json") == []


def test_around_keeps_the_lines_within_two_minutes_of_the_report_in_order_once() -> None:
    report = 1_700_000_000.0
    offsets = [-121, -120, -5, 0, 90, 120, 120.5, 600]
    lines = [
        *evidence.transcript_lines(
            "".join(json.dumps(_event(int((report + s) * 1000), f"at {s}")) for s in reversed(offsets))
        ),
        *evidence.transcript_lines(json.dumps(_event(int(report * 1000), "at 0"))),  # the same result twice
    ]
    kept = evidence.around(lines, report)
    assert [line["text"] for line in kept] == ["at -120", "at -5", "at 0", "at 90", "at 120"]
    assert [line["text"] for line in evidence.around(lines, report, window=5)] == ["at -5", "at 0"]
    assert evidence.around(lines, report + 3600) == []


def test_the_local_stack_writes_transcripts_the_reader_reads() -> None:
    from devstack.media.captions import transcript_event

    result = {
        "ResultId": "m-1",
        "StartTimeMs": 1500,
        "EndTimeMs": 2700,
        "IsPartial": False,
        "Alternatives": [{"Transcript": "hello world"}],
        "LanguageCode": "en-US",
    }
    [line] = evidence.transcript_lines(json.dumps(transcript_event(result, 1_700_000_000.0)) + "\n")
    assert line["at"] == "2023-11-14T22:13:21.500000Z" and line["ended_at"] == "2023-11-14T22:13:22.700000Z"
    assert line["text"] == "hello world" and line["user_id"] is None
