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


# -- the refusals of the commands that write no stage change ----------------------------------


def test_a_removed_member_cannot_rejoin() -> None:
    # GIVEN someone a moderator removed  WHEN they join again  THEN they are refused
    refused(ErrorCode.NOT_ALLOWED, rules.check_join, removed=True, blocked_by_moderator=False)


def test_someone_a_moderator_blocks_cannot_join_and_is_not_told_why() -> None:
    with pytest.raises(CommandError) as err:
        rules.check_join(removed=False, blocked_by_moderator=True)
    assert err.value.code == ErrorCode.NOT_ALLOWED and "block" not in err.value.message


def test_anyone_else_may_join() -> None:
    rules.check_join(removed=False, blocked_by_moderator=False)


def test_lowering_a_hand_that_is_not_raised_is_a_conflict() -> None:
    refused(ErrorCode.CONFLICT, rules.require_hand_raised, False)
    rules.require_hand_raised(True)


def test_denying_someone_who_has_not_asked_is_a_conflict() -> None:
    refused(ErrorCode.CONFLICT, rules.require_asked_to_speak, False)
    rules.require_asked_to_speak(True)


def test_declining_without_an_invitation_is_a_conflict() -> None:
    refused(ErrorCode.CONFLICT, rules.require_invitation, False)
    rules.require_invitation(True)


@pytest.mark.parametrize(
    ("actor", "target", "count", "code"),
    [
        (S, L, ROOMY, ErrorCode.NOT_ALLOWED),
        (L, L, ROOMY, ErrorCode.NOT_ALLOWED),
        (H, S, ROOMY, ErrorCode.CONFLICT),
        (C, C, ROOMY, ErrorCode.CONFLICT),
        (H, L, StageCount(on_stage=rules.MAX_STAGE, cohosts=0), ErrorCode.LIMIT_REACHED),
    ],
)
def test_invite_refusals(actor: Role, target: Role, count: StageCount, code: ErrorCode) -> None:
    refused(code, rules.check_invite, actor, target, count)


@pytest.mark.parametrize("actor", [H, C])
def test_moderators_invite_listeners(actor: Role) -> None:
    rules.check_invite(actor, L, ROOMY)


def test_accepting_an_invitation_order_of_refusals() -> None:
    # no invitation is reported before anything else
    refused(ErrorCode.CONFLICT, rules.check_accept_invite, S, invited=False, count=ROOMY)
    refused(ErrorCode.CONFLICT, rules.check_accept_invite, S, invited=True, count=ROOMY)
    full = StageCount(on_stage=rules.MAX_STAGE, cohosts=0)
    refused(ErrorCode.LIMIT_REACHED, rules.check_accept_invite, L, invited=True, count=full)
    rules.check_accept_invite(L, invited=True, count=ROOMY)


def test_approving_needs_a_raised_hand_from_a_listener() -> None:
    refused(ErrorCode.CONFLICT, rules.check_approve, H, L, hand_raised=False, count=ROOMY)
    refused(ErrorCode.NOT_ALLOWED, rules.check_approve, S, L, hand_raised=True, count=ROOMY)
    rules.check_approve(C, L, hand_raised=True, count=ROOMY)


@pytest.mark.parametrize(("role", "gives_up"), [(H, False), (C, False), (S, True)])
def test_who_gives_up_their_seat_on_leaving(role: Role, gives_up: bool) -> None:
    assert rules.gives_up_seat_on_leave(role) is gives_up


def test_the_speak_policy_values_are_one_set() -> None:
    from typing import get_args

    assert set(get_args(rules.SpeakPolicyName)) == {p.value for p in SpeakPolicy}


def test_settings_change_cleans_the_title_and_refuses_nothing() -> None:
    assert rules.settings_change({"title": "  a   b "}) == {"title": "a b"}
    assert rules.settings_change({"handover": False}) == {"handover": False}
    refused(ErrorCode.BAD_REQUEST, rules.settings_change, {})
    refused(ErrorCode.BAD_REQUEST, rules.settings_change, {"title": "   "})


def test_an_unknown_reaction_is_a_bad_request_that_lists_the_allowed_ones() -> None:
    rules.check_reaction("🔥")
    with pytest.raises(CommandError) as err:
        rules.check_reaction("🦄")
    assert err.value.code == ErrorCode.BAD_REQUEST and err.value.data == {"allowed": sorted(rules.REACTIONS)}


def test_the_listener_limit() -> None:
    rules.check_room(9, 10)
    refused(ErrorCode.LIMIT_REACHED, rules.check_room, 10, 10)
