"""The role rules of a space, without AWS: who may do what to whom."""

from __future__ import annotations

import pytest

from chalicelib import rules
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.rules import Role, SpeakPolicy, StageCount
from chalicelib.spaces.stage import Stage

H, C, S, L = Role.HOST, Role.COHOST, Role.SPEAKER, Role.LISTENER
ROOMY = StageCount(on_stage=2, cohosts=0)


def refused(code: ErrorCode, fn, *args, **kwargs) -> None:
    with pytest.raises(CommandError) as err:
        fn(*args, **kwargs)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        (H, C, True),
        (H, S, True),
        (H, L, True),
        (C, S, True),
        (C, L, True),
        (C, C, False),
        (C, H, False),
        (S, L, False),
        (S, S, False),
        (L, L, False),
        (H, H, False),
    ],
)
def test_remove_only_someone_below_you(actor: Role, target: Role, allowed: bool) -> None:
    if allowed:
        rules.check_remove(actor, target)
    else:
        refused(ErrorCode.NOT_ALLOWED, rules.check_remove, actor, target)


def test_promotion_needs_a_moderator_a_listener_and_a_seat() -> None:
    rules.check_promote(C, L, ROOMY)
    refused(ErrorCode.NOT_ALLOWED, rules.check_promote, S, L, ROOMY)
    refused(ErrorCode.CONFLICT, rules.check_promote, H, S, ROOMY)
    refused(
        ErrorCode.LIMIT_REACHED, rules.check_promote, H, L, StageCount(on_stage=rules.MAX_STAGE, cohosts=2)
    )
    rules.check_promote(H, L, StageCount(on_stage=rules.MAX_STAGE - 1, cohosts=2))


def test_cohosts_only_by_the_host_and_at_most_two() -> None:
    rules.check_cohost_add(
        H, S, StageCount(on_stage=rules.MAX_STAGE, cohosts=1)
    )  # a speaker keeps their seat
    refused(
        ErrorCode.LIMIT_REACHED, rules.check_cohost_add, H, L, StageCount(on_stage=rules.MAX_STAGE, cohosts=1)
    )
    refused(ErrorCode.LIMIT_REACHED, rules.check_cohost_add, H, S, StageCount(on_stage=3, cohosts=2))
    refused(ErrorCode.NOT_ALLOWED, rules.check_cohost_add, C, L, ROOMY)
    refused(ErrorCode.CONFLICT, rules.check_cohost_add, H, C, ROOMY)
    rules.check_cohost_remove(H, C)
    refused(ErrorCode.NOT_ALLOWED, rules.check_cohost_remove, C, C)
    refused(ErrorCode.CONFLICT, rules.check_cohost_remove, H, S)


def test_muting_others_and_self() -> None:
    rules.check_mute_other(H, C)
    rules.check_mute_other(C, S)
    refused(ErrorCode.NOT_ALLOWED, rules.check_mute_other, C, H)
    refused(ErrorCode.NOT_ALLOWED, rules.check_mute_other, L, S)
    refused(ErrorCode.CONFLICT, rules.check_mute_other, H, L)
    for role in (H, C, S):
        rules.check_self_mic(role)
    refused(ErrorCode.NOT_ALLOWED, rules.check_self_mic, L)


def test_demote_and_stage_leave() -> None:
    rules.check_demote(C, S)
    refused(ErrorCode.CONFLICT, rules.check_demote, H, C)  # co-hosts go through cohost.remove
    refused(ErrorCode.NOT_ALLOWED, rules.check_demote, S, S)
    rules.check_stage_leave(S)
    rules.check_stage_leave(C)
    refused(ErrorCode.NOT_ALLOWED, rules.check_stage_leave, H)
    refused(ErrorCode.CONFLICT, rules.check_stage_leave, L)


@pytest.mark.parametrize(
    ("policy", "follows", "allowed"),
    [
        (SpeakPolicy.EVERYONE, False, True),
        (SpeakPolicy.FOLLOWING, True, True),
        (SpeakPolicy.FOLLOWING, False, False),
        (SpeakPolicy.INVITED, True, False),
    ],
)
def test_who_may_request_to_speak(policy: SpeakPolicy, follows: bool, allowed: bool) -> None:
    if allowed:
        rules.check_hand_raise(L, policy, host_follows_caller=follows)
    else:
        refused(ErrorCode.NOT_ALLOWED, rules.check_hand_raise, L, policy, host_follows_caller=follows)
    refused(ErrorCode.CONFLICT, rules.check_hand_raise, S, SpeakPolicy.EVERYONE, host_follows_caller=False)


def test_space_state() -> None:
    rules.require_live("live")
    refused(ErrorCode.SPACE_ENDED, rules.require_live, "ended")
    refused(ErrorCode.NOT_ALLOWED, rules.require_live, "scheduled")


def test_titles() -> None:
    assert rules.validate_title("  Friday   jam ") == "Friday jam"
    refused(ErrorCode.BAD_REQUEST, rules.validate_title, "   ")
    refused(ErrorCode.BAD_REQUEST, rules.validate_title, "x" * 71)
    assert rules.validate_title("x" * 70) == "x" * 70


def test_handover_goes_to_the_longest_serving_present_cohost() -> None:
    stage = {
        "ada": {"role": "host", "present": False, "since": "1"},
        "bob": {"role": "cohost", "present": True, "since": "3"},
        "cem": {"role": "cohost", "present": True, "since": "2"},
        "dan": {"role": "cohost", "present": False, "since": "0"},
        "eve": {"role": "speaker", "present": True, "since": "0"},
    }
    assert Stage.from_stored(stage).next_host("ada") == "cem"
    assert Stage.from_stored({"ada": stage["ada"], "eve": stage["eve"]}).next_host("ada") is None
