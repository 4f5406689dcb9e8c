"""Every stage decision, from what one read returns to the Change the store would write.

No AWS: the space and member items are built in memory (PynamoDB models are plain
objects until saved), and decisions.py does no I/O.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import rules
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.media import RECEIVE, SEND_RECEIVE
from chalicelib.models import Member, Space
from chalicelib.rules import Role, SpaceState
from chalicelib.spaces import decisions
from chalicelib.spaces.decisions import Change, Ctx
from chalicelib.spaces.stage import Stage, StageEntry

SINCE = "2026-01-01T00:00:09.000000Z"


def entry(role: Role, present: bool = True, since: str = "2026-01-01T00:00:00.000000Z", **kw: Any) -> dict:
    return StageEntry(role, present=present, since=since, connection_id=f"c-{role}", **kw).to_stored()


def room(state: SpaceState = SpaceState.LIVE, **stage: dict) -> Space:
    """Ada hosts, Bob co-hosts, Cem speaks, unless `stage` says otherwise."""
    seats = stage or {
        "ada": entry(Role.HOST),
        "bob": entry(Role.COHOST, since="2026-01-01T00:00:01.000000Z"),
        "cem": entry(Role.SPEAKER, since="2026-01-01T00:00:02.000000Z"),
    }
    return Space("s1", state=state.value, host_id="ada", stage=seats, stage_version=4, handover=True)


def member(user_id: str, present: bool = True, removed: bool = False, **kw: Any) -> Member:
    return Member("s1", user_id, present=present, removed=removed, connection_id=f"c-{user_id}", **kw)


def read(caller: str, space: Space | None = None, target: Member | None = None, **caller_kw: Any) -> Ctx:
    """What store.load returns for `caller` (present unless told) and an optional target."""
    me = caller_kw.pop("me", None)
    return Ctx(
        caller, f"c-{caller}", space or room(), me if me is not None else member(caller, **caller_kw), target
    )


def refused(code: ErrorCode, decide: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(CommandError) as err:
        decide(*args, **kwargs)
    assert err.value.code == code, err.value.message
    return err.value.message


def full_stage() -> dict[str, dict]:
    seats = {"ada": entry(Role.HOST), "bob": entry(Role.COHOST)}
    seats.update({f"s{i}": entry(Role.SPEAKER) for i in range(rules.MAX_STAGE - 2)})
    return seats


# -- reading: present, roles, targets -------------------------------------------------


def test_a_present_listener_reads_as_listener() -> None:
    ctx = read("lou")
    assert ctx.require_present() == Role.LISTENER


@pytest.mark.parametrize(
    "me",
    [None, member("lou", present=False), member("lou", removed=True)],
    ids=["never joined", "left", "removed"],
)
def test_someone_not_present_is_told_to_join_first(me: Member | None) -> None:
    ctx = Ctx("lou", "c-lou", room(), me)
    assert refused(ErrorCode.NOT_ALLOWED, ctx.require_present) == "join the space first"


@pytest.mark.parametrize(
    ("state", "code"),
    [(SpaceState.SCHEDULED, ErrorCode.NOT_ALLOWED), (SpaceState.ENDED, ErrorCode.SPACE_ENDED)],
)
def test_nothing_happens_in_a_space_that_is_not_live(state: SpaceState, code: ErrorCode) -> None:
    refused(code, read("ada", room(state)).require_present)


def test_a_target_who_is_not_here_is_not_found() -> None:
    ctx = read("ada", target=member("lou", present=False))
    refused(ErrorCode.NOT_FOUND, ctx.require_target, "lou")
    refused(ErrorCode.NOT_FOUND, read("ada").require_target, "zed")  # never joined


def test_a_stage_member_whose_item_is_missing_is_not_found() -> None:
    # the stage says cem speaks, but the read returned no member item for him
    refused(ErrorCode.NOT_FOUND, read("ada").require_target, "cem")


# -- accept an invitation ------------------------------------------------------------------


def test_an_invited_listener_accepts_and_takes_a_seat() -> None:
    # GIVEN a listener with an invitation
    ctx = read("lou", invited_at="t0", hand_raised_at="t1")
    # WHEN they accept
    change = decisions.accept_invite(ctx, SINCE)
    # THEN they speak, self-muted; their hand and invitation go; they leave the listener count
    assert change.stage.get("lou") == StageEntry(Role.SPEAKER, since=SINCE, connection_id="c-lou")
    assert (change.role, change.promoted, change.listener_delta) == (Role.SPEAKER, True, -1)
    assert (change.reason, change.target) == ("invite_accepted", "lou")
    assert (change.previous_audio, change.audio) == (RECEIVE, SEND_RECEIVE)


def test_accepting_without_an_invitation_is_a_conflict() -> None:
    assert (
        refused(ErrorCode.CONFLICT, decisions.accept_invite, read("lou"), SINCE)
        == "you have no invitation to speak"
    )


def test_accepting_while_on_stage_is_a_conflict() -> None:
    ctx = read("cem", invited_at="t0")
    assert refused(ErrorCode.CONFLICT, decisions.accept_invite, ctx, SINCE) == "you are already on stage"


def test_accepting_on_a_full_stage_reaches_the_limit() -> None:
    ctx = read("lou", room(**full_stage()), invited_at="t0")
    refused(ErrorCode.LIMIT_REACHED, decisions.accept_invite, ctx, SINCE)


def test_accepting_needs_presence() -> None:
    refused(
        ErrorCode.NOT_ALLOWED, decisions.accept_invite, read("lou", present=False, invited_at="t0"), SINCE
    )


# -- approve a request ---------------------------------------------------------------------


@pytest.mark.parametrize("moderator", ["ada", "bob"])
def test_a_moderator_approves_a_raised_hand(moderator: str) -> None:
    ctx = read(moderator, target=member("lou", hand_raised_at="t1"))
    change = decisions.approve_request(ctx, "lou", SINCE)
    assert change.stage.role_of("lou") == Role.SPEAKER
    assert (change.reason, change.promoted, change.listener_delta) == ("request_approved", True, -1)


def test_approving_someone_who_has_not_asked_is_a_conflict() -> None:
    ctx = read("ada", target=member("lou"))
    message = refused(ErrorCode.CONFLICT, decisions.approve_request, ctx, "lou", SINCE)
    assert message == "that person has not asked to speak"


def test_only_a_moderator_approves() -> None:
    ctx = read("cem", target=member("lou", hand_raised_at="t1"))
    refused(ErrorCode.NOT_ALLOWED, decisions.approve_request, ctx, "lou", SINCE)


def test_approving_someone_already_on_stage_is_a_conflict() -> None:
    ctx = read("ada", target=member("cem"))
    refused(ErrorCode.CONFLICT, decisions.approve_request, ctx, "cem", SINCE)


def test_approving_onto_a_full_stage_reaches_the_limit() -> None:
    ctx = read("ada", room(**full_stage()), target=member("lou", hand_raised_at="t1"))
    refused(ErrorCode.LIMIT_REACHED, decisions.approve_request, ctx, "lou", SINCE)


def test_approving_someone_who_left_is_not_found() -> None:
    ctx = read("ada", target=member("lou", present=False, hand_raised_at="t1"))
    refused(ErrorCode.NOT_FOUND, decisions.approve_request, ctx, "lou", SINCE)


# -- leave the stage, remove a speaker -------------------------------------------------------


@pytest.mark.parametrize("who", ["bob", "cem"])
def test_a_cohost_or_speaker_steps_down_to_the_audience(who: str) -> None:
    change = decisions.leave_stage(read(who))
    assert who not in change.stage
    assert (change.role, change.listener_delta, change.reason) == (Role.LISTENER, 1, "left_stage")
    assert change.audio == RECEIVE


def test_the_host_cannot_leave_the_stage() -> None:
    refused(ErrorCode.NOT_ALLOWED, decisions.leave_stage, read("ada"))


def test_a_listener_cannot_leave_a_stage_they_are_not_on() -> None:
    refused(ErrorCode.CONFLICT, decisions.leave_stage, read("lou"))


@pytest.mark.parametrize("moderator", ["ada", "bob"])
def test_a_moderator_moves_a_speaker_to_the_audience(moderator: str) -> None:
    change = decisions.remove_speaker(read(moderator, target=member("cem")), "cem")
    assert "cem" not in change.stage and change.reason == "moved_to_audience"
    assert (change.previous_audio, change.audio) == (SEND_RECEIVE, RECEIVE)


def test_a_speaker_who_is_away_is_not_counted_back_as_a_listener() -> None:
    space = room(ada=entry(Role.HOST), cem=entry(Role.SPEAKER, present=False))
    change = decisions.demotion(read("ada", space), "cem", "moved_to_audience")
    assert change.listener_delta == 0


@pytest.mark.parametrize(
    ("actor", "target", "code"),
    [
        ("cem", "cem", ErrorCode.NOT_ALLOWED),  # a speaker moderates no one
        ("lou", "cem", ErrorCode.NOT_ALLOWED),  # nor does a listener
        ("bob", "ada", ErrorCode.CONFLICT),  # the host is not a speaker
        ("ada", "bob", ErrorCode.CONFLICT),  # nor is a co-host (remove the co-host first)
        ("ada", "lou", ErrorCode.CONFLICT),  # a listener is not on stage
    ],
)
def test_removing_a_speaker_refusals(actor: str, target: str, code: ErrorCode) -> None:
    refused(code, decisions.remove_speaker, read(actor, target=member(target)), target)


# -- microphones -----------------------------------------------------------------------------


def test_a_speaker_unmutes_themself() -> None:
    change = decisions.mic(read("cem"), "cem", mute=False, by_host=False)
    seat = change.stage.get("cem")
    assert seat is not None and not seat.muted and seat.muted_by is None
    assert change.reason == "unmuted"


def test_a_self_mute_does_not_touch_the_media_capability() -> None:
    change = decisions.mic(read("cem"), "cem", mute=True, by_host=False)
    assert change.audio == change.previous_audio == SEND_RECEIVE


def test_a_host_mute_is_enforced_at_the_media_service() -> None:
    change = decisions.mic(read("ada", target=member("cem")), "cem", mute=True, by_host=True)
    seat = change.stage.get("cem")
    assert seat is not None and seat.muted_by == "host"
    assert (change.previous_audio, change.audio) == (SEND_RECEIVE, RECEIVE)


def test_unmuting_after_a_host_mute_gives_the_microphone_back() -> None:
    space = room(ada=entry(Role.HOST), cem=entry(Role.SPEAKER, muted_by="host"))
    change = decisions.mic(read("cem", space), "cem", mute=False, by_host=False)
    assert (change.previous_audio, change.audio) == (RECEIVE, SEND_RECEIVE)


def test_a_listener_has_no_microphone() -> None:
    refused(ErrorCode.NOT_ALLOWED, decisions.mic, read("lou"), "lou", mute=False, by_host=False)


@pytest.mark.parametrize(
    ("actor", "target", "code"),
    [
        ("cem", "bob", ErrorCode.NOT_ALLOWED),  # not a moderator
        ("bob", "ada", ErrorCode.NOT_ALLOWED),  # a co-host cannot mute the host
        ("ada", "lou", ErrorCode.CONFLICT),  # a listener is not on stage
    ],
)
def test_muting_someone_else_refusals(actor: str, target: str, code: ErrorCode) -> None:
    refused(code, decisions.mic, read(actor, target=member(target)), target, mute=True, by_host=True)


def test_muting_someone_who_is_not_here_is_not_found() -> None:
    refused(ErrorCode.NOT_FOUND, decisions.mic, read("ada"), "zed", mute=True, by_host=True)


# -- co-hosts ----------------------------------------------------------------------------------


def test_the_host_makes_a_speaker_cohost_in_their_seat() -> None:
    change = decisions.add_cohost(read("ada", target=member("cem")), "cem", SINCE)
    seat = change.stage.get("cem")
    assert seat is not None and seat.role == Role.COHOST and seat.since != SINCE
    assert (change.promoted, change.listener_delta, change.audio) == (False, 0, None)


def test_the_host_makes_a_listener_cohost_onto_the_stage() -> None:
    change = decisions.add_cohost(read("ada", target=member("lou")), "lou", SINCE)
    assert change.stage.role_of("lou") == Role.COHOST
    assert (change.promoted, change.listener_delta, change.role) == (True, -1, Role.COHOST)


def test_a_third_cohost_reaches_the_limit() -> None:
    space = room(
        ada=entry(Role.HOST), bob=entry(Role.COHOST), dan=entry(Role.COHOST), cem=entry(Role.SPEAKER)
    )
    refused(
        ErrorCode.LIMIT_REACHED, decisions.add_cohost, read("ada", space, target=member("cem")), "cem", SINCE
    )


def test_a_full_stage_takes_a_speaker_as_cohost_but_not_a_listener() -> None:
    space = room(**full_stage())
    assert decisions.add_cohost(read("ada", space, target=member("s0")), "s0", SINCE).stage.role_of("s0")
    refused(
        ErrorCode.LIMIT_REACHED, decisions.add_cohost, read("ada", space, target=member("lou")), "lou", SINCE
    )


@pytest.mark.parametrize(("actor", "code"), [("bob", ErrorCode.NOT_ALLOWED), ("cem", ErrorCode.NOT_ALLOWED)])
def test_only_the_host_adds_cohosts(actor: str, code: ErrorCode) -> None:
    refused(code, decisions.add_cohost, read(actor, target=member("lou")), "lou", SINCE)


def test_making_a_cohost_cohost_again_is_a_conflict() -> None:
    refused(ErrorCode.CONFLICT, decisions.add_cohost, read("ada", target=member("bob")), "bob", SINCE)


def test_the_host_takes_cohost_away_and_the_seat_stays() -> None:
    change = decisions.remove_cohost(read("ada"), "bob")
    assert change.stage.role_of("bob") == Role.SPEAKER and change.reason == "cohost_removed"


@pytest.mark.parametrize(
    ("actor", "target", "code"),
    [
        ("bob", "bob", ErrorCode.NOT_ALLOWED),  # only the host
        ("ada", "cem", ErrorCode.CONFLICT),  # not a co-host
        ("ada", "zed", ErrorCode.NOT_FOUND),  # not here at all
        ("lou", "lou", ErrorCode.NOT_FOUND),  # a listener is on no stage to be a co-host of
    ],
)
def test_removing_a_cohost_refusals(actor: str, target: str, code: ErrorCode) -> None:
    refused(code, decisions.remove_cohost, read(actor), target)


# -- leaving the space from a seat, removal, hand-over --------------------------------------


def test_a_speaker_who_leaves_the_space_gives_up_the_seat() -> None:
    change = decisions.leave_seat(read("cem"), "cem", "left", grace_until=100.0)
    assert "cem" not in change.stage
    assert (change.exit, change.role, change.grace_deadline) == ("left", Role.LISTENER, None)


def test_a_cohost_who_leaves_keeps_the_seat_away() -> None:
    change = decisions.leave_seat(read("bob"), "bob", "disconnected", grace_until=100.0)
    seat = change.stage.get("bob")
    assert seat is not None and not seat.present and seat.connection_id is None
    assert (change.exit, change.role, change.grace_deadline, change.reason) == (
        "left",
        None,
        None,
        "disconnected",
    )


def test_the_host_who_leaves_starts_the_grace_period() -> None:
    change = decisions.leave_seat(read("ada"), "ada", "left", grace_until=100.0)
    assert change.grace_deadline == 100.0
    assert change.stage.role_of("ada") == Role.HOST


def test_leaving_a_seat_someone_else_took_away_is_a_conflict() -> None:
    refused(ErrorCode.CONFLICT, decisions.leave_seat, read("lou"), "lou", "left", grace_until=1.0)


def test_removal_takes_the_seat_and_marks_the_member_removed() -> None:
    change = decisions.expel(read("ada"), "cem", "removed")
    assert "cem" not in change.stage
    assert (change.exit, change.role) == ("removed", Role.LISTENER)


def away_host_room(grace: float | None = 50.0, **stage: dict) -> Space:
    space = room(
        ada=entry(Role.HOST, present=False),
        bob=entry(Role.COHOST, since="2026-01-01T00:00:03.000000Z"),
        dan=entry(Role.COHOST, since="2026-01-01T00:00:02.000000Z"),
        **stage,
    )
    space.grace_deadline = grace
    return space


def test_an_expired_grace_hands_the_space_to_the_longest_serving_cohost() -> None:
    change = decisions.hand_over(read("ada", away_host_room()), "ada", now=60.0)
    assert (change.new_host, change.target, change.role) == ("dan", "dan", Role.HOST)
    assert "ada" not in change.stage and change.stage.role_of("dan") == Role.HOST


def present_host_room() -> Space:
    space = away_host_room()
    space.stage = dict(space.stage or {}, ada=entry(Role.HOST))
    return space


@pytest.mark.parametrize(
    "space",
    [
        away_host_room(grace=None),  # the host came back (their join cleared the deadline)
        away_host_room(grace=70.0),  # not expired yet
        present_host_room(),  # present again, deadline not yet cleared
    ],
    ids=["cleared", "not yet", "present"],
)
def test_a_host_who_returned_keeps_the_space(space: Space) -> None:
    with pytest.raises(decisions.HostReturned):
        decisions.hand_over(read("ada", space), "ada", now=60.0)


def test_no_present_cohost_means_no_hand_over() -> None:
    space = room(ada=entry(Role.HOST, present=False), bob=entry(Role.COHOST, present=False))
    space.grace_deadline = 50.0
    refused(ErrorCode.CONFLICT, decisions.hand_over, read("ada", space), "ada", now=60.0)


def test_a_change_is_a_value() -> None:
    change = decisions.leave_stage(read("cem"))
    assert isinstance(change, Change) and isinstance(change.stage, Stage)
    with pytest.raises(AttributeError):
        change.reason = "x"  # type: ignore[misc]


# -- joining ---------------------------------------------------------------------------------


def joiner(caller: str, space: Space | None = None, me: Member | None = None, listeners: int = 0) -> Ctx:
    ctx = Ctx(caller, f"c-{caller}-new", space or room(), me)
    ctx.listeners = listeners
    return ctx


def test_a_newcomer_joins_as_a_listener() -> None:
    # GIVEN someone who never joined  WHEN they join  THEN they are a new listener
    join = decisions.joining(joiner("lou"), blocked_by_moderator=False, max_listeners=10)
    assert (join.role, join.seat, join.already_present, join.replaced, join.new_listener) == (
        Role.LISTENER,
        None,
        False,
        None,
        True,
    )


def test_a_cohost_who_was_away_comes_back_to_their_seat() -> None:
    space = room(ada=entry(Role.HOST), bob=entry(Role.COHOST, present=False))
    join = decisions.joining(
        joiner("bob", space, member("bob", present=False)), blocked_by_moderator=False, max_listeners=10
    )
    assert join.role == Role.COHOST and join.seat is not None and not join.new_listener


def test_a_second_device_replaces_the_first() -> None:
    join = decisions.joining(joiner("lou", me=member("lou")), blocked_by_moderator=False, max_listeners=10)
    assert (join.already_present, join.replaced, join.new_listener) == (True, "c-lou", False)


def test_a_full_space_refuses_a_new_listener_but_not_a_returning_seat() -> None:
    refused(
        ErrorCode.LIMIT_REACHED,
        decisions.joining,
        joiner("lou", listeners=10),
        blocked_by_moderator=False,
        max_listeners=10,
    )
    space = room(ada=entry(Role.HOST, present=False))
    join = decisions.joining(joiner("ada", space, listeners=10), blocked_by_moderator=False, max_listeners=10)
    assert join.role == Role.HOST


def test_a_removed_member_cannot_rejoin() -> None:
    ctx = joiner("lou", me=member("lou", present=False, removed=True))
    message = refused(
        ErrorCode.NOT_ALLOWED, decisions.joining, ctx, blocked_by_moderator=False, max_listeners=10
    )
    assert message == "you were removed from this space"


def test_someone_a_moderator_blocks_cannot_join() -> None:
    refused(
        ErrorCode.NOT_ALLOWED, decisions.joining, joiner("lou"), blocked_by_moderator=True, max_listeners=10
    )


@pytest.mark.parametrize("role", [Role.HOST, Role.COHOST])
def test_a_block_never_keeps_a_host_or_cohost_out_of_their_seat(role: Role) -> None:
    # GIVEN the host (or a co-host) away, blocked by a co-host  WHEN they rejoin  THEN they are seated
    host = "eve" if role == Role.HOST else "ada"
    space = room(**{host: entry(Role.HOST, present=host == "ada")}, bob=entry(Role.COHOST))
    if role == Role.COHOST:
        space = room(ada=entry(Role.HOST), bob=entry(Role.COHOST), eve=entry(Role.COHOST, present=False))
    join = decisions.joining(
        joiner("eve", space, member("eve", present=False)), blocked_by_moderator=True, max_listeners=10
    )
    assert join.role == role


def test_a_blocked_speaker_coming_back_is_kept_out() -> None:
    space = room(ada=entry(Role.HOST), cem=entry(Role.SPEAKER, present=False))
    refused(
        ErrorCode.NOT_ALLOWED,
        decisions.joining,
        joiner("cem", space, member("cem", present=False)),
        blocked_by_moderator=True,
        max_listeners=10,
    )


@pytest.mark.parametrize(
    ("state", "code"),
    [(SpaceState.SCHEDULED, ErrorCode.NOT_ALLOWED), (SpaceState.ENDED, ErrorCode.SPACE_ENDED)],
)
def test_joining_a_space_that_is_not_live(state: SpaceState, code: ErrorCode) -> None:
    refused(code, decisions.joining, joiner("lou", room(state)), blocked_by_moderator=False, max_listeners=10)


# -- removing a participant --------------------------------------------------------------------


@pytest.mark.parametrize("target", [member("lou"), member("lou", present=False)], ids=["present", "gone"])
def test_a_moderator_removes_a_listener_present_or_not(target: Member) -> None:
    assert decisions.participant_to_remove(read("bob", target=target), "lou") is target


@pytest.mark.parametrize(
    ("actor", "target", "code"),
    [
        ("ada", member("lou", removed=True), ErrorCode.NOT_FOUND),  # removed already
        ("ada", None, ErrorCode.NOT_FOUND),  # never joined
        ("cem", member("lou"), ErrorCode.NOT_ALLOWED),  # a speaker is no moderator
        ("bob", member("ada"), ErrorCode.NOT_ALLOWED),  # a co-host cannot remove the host
    ],
)
def test_removal_refusals(actor: str, target: Member | None, code: ErrorCode) -> None:
    user_id = target.user_id if target is not None else "lou"
    refused(code, decisions.participant_to_remove, read(actor, target=target), user_id)
