"""Triage rules in isolation: priorities, the crowd rule, which admin action fits which case."""

from __future__ import annotations

from typing import get_args

import pytest

from chalicelib import triage
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.protocol import ReportCategory

MIN = 60.0


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("violence", "high"),
        ("self_harm", "high"),
        ("hate", "normal"),
        ("harassment", "normal"),
        ("sexual_content", "normal"),
        ("spam", "low"),
        ("impersonation", "low"),
        ("other", "low"),
    ],
)
def test_category_severity(category: str, expected: str) -> None:
    assert triage.category_priority(category) == expected


def test_every_protocol_category_has_a_severity() -> None:
    categories = set(get_args(ReportCategory))
    assert categories >= triage.HIGH_SEVERITY | triage.NORMAL_SEVERITY
    assert {triage.category_priority(c) for c in categories} == {"low", "normal", "high"}


def test_three_distinct_reporters_within_ten_minutes_make_a_crowd() -> None:
    recent = [[0.0, "a"], [4 * MIN, "b"], [10 * MIN, "c"]]
    assert triage.crowd_size(recent) == 3
    assert triage.priority_for(["spam"], recent) == "high"


def test_reporters_further_apart_than_ten_minutes_are_no_crowd() -> None:
    recent = [[0.0, "a"], [6 * MIN, "b"], [10 * MIN + 1, "c"]]
    assert triage.crowd_size(recent) == 2
    assert triage.priority_for(["spam"], recent) == "low"


def test_one_person_reporting_again_and_again_is_no_crowd() -> None:
    recent = [[i * 1.0, "a"] for i in range(20)] + [[5.0, "b"]]
    assert triage.crowd_size(recent) == 2
    assert triage.priority_for(["harassment"], recent) == "normal"


def test_the_crowd_can_be_anywhere_in_the_history_and_in_any_order() -> None:
    recent = [[100 * MIN, "c"], [0.0, "x"], [101 * MIN, "a"], [50 * MIN, "y"], [99 * MIN, "b"]]
    assert triage.crowd_size(recent) == 3


def test_a_high_severity_category_alone_is_high() -> None:
    assert triage.priority_for(["spam", "violence"], [[0.0, "a"]]) == "high"


def test_priority_never_falls_while_open() -> None:
    assert triage.priority_for(["spam"], [[0.0, "a"]], current="high") == "high"
    assert triage.priority_for(["harassment"], [[0.0, "a"]], current="low") == "normal"


def test_add_recent_keeps_the_latest_in_time_order() -> None:
    recent: list[list[object]] = []
    for i in range(60):
        recent = triage.add_recent(recent, float(60 - i), f"u{i}", keep=50)
    assert len(recent) == 50
    assert [t for t, _ in recent] == sorted(t for t, _ in recent)
    assert recent[0][0] == 11.0 and recent[-1][0] == 60.0


def test_target_keys() -> None:
    assert triage.target_key("sp1", "bob") == "user#bob"
    assert triage.target_key("sp1", None) == "space#sp1"
    assert triage.split_target("user#bob") == ("user", "bob")
    assert triage.split_target("space#sp:1") == ("space", "sp:1")
    for bad in ("bob", "group#x", "user#"):
        with pytest.raises(ValueError):
            triage.split_target(bad)


@pytest.mark.parametrize("action", sorted(triage.CLOSING_ACTIONS))
def test_closing_actions_need_an_open_case(action: str) -> None:
    target = "user"
    triage.check_action(action, target, "open")
    with pytest.raises(CommandError) as err:
        triage.check_action(action, target, "closed")
    assert err.value.code == ErrorCode.CONFLICT


def test_a_suspension_can_be_lifted_on_a_closed_case() -> None:
    triage.check_action("lift_suspension", "user", "closed")


@pytest.mark.parametrize("action", sorted(triage.USER_ACTIONS))
def test_user_actions_do_not_apply_to_a_space(action: str) -> None:
    with pytest.raises(CommandError) as err:
        triage.check_action(action, "space", "open")
    assert err.value.code == ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("action", ["dismiss", "end_space"])
def test_space_cases_can_be_dismissed_or_ended(action: str) -> None:
    triage.check_action(action, "space", "open")


def test_an_unknown_action_is_a_bad_request() -> None:
    with pytest.raises(CommandError) as err:
        triage.check_action("ban_forever", "user", "open")
    assert err.value.code == ErrorCode.BAD_REQUEST


def test_a_repeat_is_the_same_admin_making_the_same_request() -> None:
    request = {"action": "suspend", "reason": "r", "duration_seconds": 600, "space_id": None}
    actions = [{"admin_id": "root", "request": dict(request), "action_id": "a1"}]
    assert triage.find_repeat(actions, "root", request) == actions[0]
    assert triage.find_repeat(actions, "other-admin", request) is None
    assert triage.find_repeat(actions, "root", dict(request, duration_seconds=60)) is None
