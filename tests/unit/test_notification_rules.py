"""The notification rules alone: ids that make "once" work, who is told, quiet hours, payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from chalicelib.notifications.rules import (
    Event,
    QuietHours,
    audience,
    chunks,
    device_id,
    in_quiet_hours,
    public,
    push_message,
)


def event(kind: str = "live", actor: str = "ada", start: str | None = None) -> Event:
    return Event(kind, "sp1", "Jazz", actor, "ada", "2026-12-01T18:00:00.000000Z", start)


def test_one_live_notification_per_space_whoever_is_the_actor() -> None:
    assert event(actor="ada").notification_id == event(actor="cohost").notification_id == "sp1:live"
    assert event("cancelled").notification_id == "sp1:cancelled"


def test_each_new_time_is_its_own_notification() -> None:
    first = event("rescheduled", start="2026-12-02T10:00:00Z").notification_id
    second = event("rescheduled", start="2026-12-02T11:00:00Z").notification_id
    assert first != second and first == "sp1:rescheduled:2026-12-02T10:00:00Z"


def test_events_round_trip_and_refuse_unknown_kinds() -> None:
    assert Event.from_dict(event().to_dict()) == event()
    with pytest.raises(ValueError, match="unknown notification kind"):
        Event.from_dict({**event().to_dict(), "kind": "spam"})


def test_audience_drops_the_excluded_and_duplicates_in_order() -> None:
    assert audience(["b", "a", "b", "c", "d"], {"c"}) == ["b", "a", "d"]
    assert audience([], {"x"}) == []


def test_chunks_hold_at_most_size() -> None:
    people = [str(i) for i in range(250)]
    parts = chunks(people, 100)
    assert [len(p) for p in parts] == [100, 100, 50] and [p for part in parts for p in part] == people


def test_public_view_and_push_payloads() -> None:
    view = public(event(), read=True)
    assert view["id"] == "sp1:live" and view["read"] is True and view["actor_id"] == "ada"
    message = json.loads(push_message(event()))
    assert message["default"] == "ada is live: Jazz"
    apns = json.loads(message["APNS"])
    assert apns["aps"]["alert"]["body"] == "ada is live: Jazz" and apns["notification_id"] == "sp1:live"
    assert json.loads(message["GCM"])["data"]["space_id"] == "sp1"
    assert message["APNS_SANDBOX"] == message["APNS"]


def test_device_id_is_a_stable_hash_of_the_token() -> None:
    assert device_id("abc") == device_id("abc") != device_id("abd")
    assert len(device_id("abc")) == 32 and "abc" not in device_id("abc")


AT = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 00:30 in Istanbul (UTC+3)


@pytest.mark.parametrize(
    ("quiet", "expected"),
    [
        (None, False),
        ({"start": "22:00", "end": "07:00", "tz": "UTC"}, False),  # 21:30 UTC: not yet
        ({"start": "21:30", "end": "22:00", "tz": "UTC"}, True),  # start is inclusive
        ({"start": "21:00", "end": "21:30", "tz": "UTC"}, False),  # end is exclusive
        ({"start": "22:00", "end": "07:00", "tz": "Europe/Istanbul"}, True),  # spans midnight
        ({"start": "01:00", "end": "07:00", "tz": "Europe/Istanbul"}, False),
        ({"start": "08:00", "end": "08:00", "tz": "UTC"}, False),  # empty window
    ],
)
def test_quiet_hours(quiet: dict[str, str] | None, expected: bool) -> None:
    assert in_quiet_hours(quiet, AT) is expected


@pytest.mark.parametrize(
    "body",
    [
        {"start": "24:00", "end": "07:00"},
        {"start": "7:00", "end": "08:00"},
        {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"},
        {"start": "22:00", "end": "07:00", "tz": ""},
        {"start": "22:00"},
        {"start": "22:00", "end": "07:00", "extra": 1},
        {"start": 2200, "end": "07:00"},
    ],
)
def test_quiet_hours_refuse_bad_input(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        QuietHours.model_validate(body)


def test_quiet_hours_default_to_utc() -> None:
    assert QuietHours.model_validate({"start": "22:00", "end": "07:00"}).tz == "UTC"
