"""What each stage command changes, given what one read returned. Pure: no I/O, no clock.

A command's I/O lives in stage_commands/membership/lifecycle; the store turns a
Change into conditional writes (store.commit), transitions.py applies it at the media
service and announces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chalicelib import rules
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Member, Space
from chalicelib.rules import Role
from chalicelib.spaces.stage import Stage, StageEntry, audio_of


@dataclass
class Ctx:
    """A command's view of one space, as one read returned it: the caller, the space,
    the caller's member item and (for commands that act on someone) the target's."""

    user_id: str
    connection_id: str | None
    space: Space
    member: Member | None
    target: Member | None = None
    seq: int = 0  # the space's last event number when this was read
    count_published_at: float = 0.0  # when the last listeners.count event went out
    listeners: int | None = None  # exact listener count, when read with the counters
    connection: Connection | None = None  # the caller's connection record, when read with it
    stage: Stage = field(init=False)

    def __post_init__(self) -> None:
        self.stage = Stage.from_stored(self.space.stage)

    def member_of(self, user_id: str) -> Member | None:
        if user_id == self.user_id:
            return self.member
        if self.target is not None and self.target.user_id == user_id:
            return self.target
        return None

    def role_of(self, user_id: str) -> Role | None:
        """Stage role, else listener while present and not removed, else None (not here)."""
        role = self.stage.role_of(user_id)
        if role is not None:
            return role
        member = self.member_of(user_id)
        if member is not None and member.present and not member.removed:
            return Role.LISTENER
        return None

    @property
    def role(self) -> Role | None:
        return self.role_of(self.user_id)

    def require_present(self) -> Role:
        rules.require_live(self.space.state)
        if self.member is None or not self.member.present or self.member.removed:
            raise CommandError(ErrorCode.NOT_ALLOWED, "join the space first")
        role = self.role
        assert role is not None
        return role

    def require_target(self, user_id: str) -> tuple[Member, Role]:
        """The person a command acts on, present in the space."""
        member = self.member_of(user_id)
        role = self.role_of(user_id)
        if member is None or role is None or not member.present:
            raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
        return member, role


@dataclass(frozen=True)
class Joining:
    """What a join is: the role it comes back with, and what it changes."""

    role: Role
    seat: StageEntry | None  # the caller's seat on stage, kept while they were away
    already_present: bool  # a second join (another device, or a retry)
    replaced: str | None  # the older connection this join takes over

    @property
    def new_listener(self) -> bool:
        return self.seat is None and not self.already_present


def joining(ctx: Ctx, *, blocked_by_moderator: bool, max_listeners: int) -> Joining:
    rules.require_live(ctx.space.state)
    member = ctx.member
    seat = ctx.stage.get(ctx.user_id)
    rules.check_join(
        removed=member is not None and bool(member.removed),
        blocked_by_moderator=blocked_by_moderator,
        seat=seat.role if seat else None,
    )
    present = member is not None and bool(member.present)
    old = member.connection_id if member is not None and present else None
    join = Joining(
        role=seat.role if seat else Role.LISTENER,
        seat=seat,
        already_present=present,
        replaced=old if old != ctx.connection_id else None,
    )
    if join.new_listener:
        rules.check_room(ctx.listeners or 0, max_listeners)
    return join


Exit = Literal["left", "removed"]


@dataclass(frozen=True)
class Change:
    """One stage change, in the domain's terms; store.commit writes it."""

    stage: Stage
    reason: str
    target: str
    role: Role | None = None  # the target's new role on their member item (None: item untouched)
    promoted: bool = False  # from the audience: clears their raised hand and invitation
    exit: Exit | None = None  # the target leaves (or is removed from) the space with this change
    listener_delta: int = 0  # the target joins (+1) or leaves (-1) the listener count
    grace_deadline: float | None = None  # the host went away: their grace period runs until
    new_host: str | None = None  # hand-over: the space's host changes, the grace period ends
    audio: str | None = None  # the target's new media capability
    previous_audio: str | None = None


# -- the shapes of change --------------------------------------------------------


def promotion(ctx: Ctx, target: Member, role: Role, reason: str, since: str) -> Change:
    stage = ctx.stage.promote(
        target.user_id,
        role,
        target.connection_id,
        since,
        audio=(target.audio, int(target.audio_at) if target.audio_at is not None else None),
    )
    return Change(
        stage=stage,
        reason=reason,
        target=target.user_id,
        role=role,
        promoted=True,
        listener_delta=-1,
        audio=audio_of(stage.get(target.user_id)),
        previous_audio=audio_of(None),
    )


def demotion(ctx: Ctx, target_id: str, reason: str) -> Change:
    old = ctx.stage.get(target_id)
    assert old is not None
    return Change(
        stage=ctx.stage.demote(target_id),
        reason=reason,
        target=target_id,
        role=Role.LISTENER,
        listener_delta=1 if old.present else 0,
        audio=audio_of(None),
        previous_audio=audio_of(old),
    )


def recast(ctx: Ctx, user_id: str, role: Role, reason: str) -> Change:
    """Someone on stage takes another stage role (speaker <-> co-host); their seat stays."""
    return Change(stage=ctx.stage.recast(user_id, role), reason=reason, target=user_id, role=role)


# -- one decision per command ----------------------------------------------------


def accept_invite(ctx: Ctx, since: str) -> Change:
    role = ctx.require_present()
    assert ctx.member is not None
    rules.check_accept_invite(role, invited=bool(ctx.member.invited_at), count=ctx.stage.counts())
    return promotion(ctx, ctx.member, Role.SPEAKER, "invite_accepted", since)


def approve_request(ctx: Ctx, user_id: str, since: str) -> Change:
    actor = ctx.require_present()
    rules.require_moderator(actor)
    target, role = ctx.require_target(user_id)
    rules.check_approve(actor, role, hand_raised=bool(target.hand_raised_at), count=ctx.stage.counts())
    return promotion(ctx, target, Role.SPEAKER, "request_approved", since)


def leave_stage(ctx: Ctx) -> Change:
    rules.check_stage_leave(ctx.require_present())
    return demotion(ctx, ctx.user_id, "left_stage")


def remove_speaker(ctx: Ctx, user_id: str) -> Change:
    actor = ctx.require_present()
    _, role = ctx.require_target(user_id)
    rules.check_demote(actor, role)
    return demotion(ctx, user_id, "moved_to_audience")


def mic(ctx: Ctx, target_id: str, *, mute: bool, by_host: bool) -> Change:
    """Mute or unmute a microphone: one's own, or (a moderator) someone below them on stage."""
    actor = ctx.require_present()
    if by_host:
        _, role = ctx.require_target(target_id)
        rules.check_mute_other(actor, role)
    else:
        rules.check_self_mic(actor)
    stage = ctx.stage.mute(target_id, mute, by_host=by_host)
    return Change(
        stage=stage,
        reason="muted" if mute else "unmuted",
        target=target_id,
        audio=audio_of(stage.get(target_id)),
        previous_audio=audio_of(ctx.stage.get(target_id)),
    )


def add_cohost(ctx: Ctx, user_id: str, since: str) -> Change:
    actor = ctx.require_present()
    target, role = ctx.require_target(user_id)
    rules.check_cohost_add(actor, role, ctx.stage.counts())
    if role == Role.LISTENER:
        return promotion(ctx, target, Role.COHOST, "cohost_added", since)
    return recast(ctx, user_id, Role.COHOST, "cohost_added")


def remove_cohost(ctx: Ctx, user_id: str) -> Change:
    actor = ctx.require_present()
    role = ctx.stage.role_of(user_id)  # only someone on stage can be a co-host
    if role is None:
        raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
    rules.check_cohost_remove(actor, role)
    return recast(ctx, user_id, Role.SPEAKER, "cohost_removed")


def participant_to_remove(ctx: Ctx, user_id: str) -> Member:
    """Who a moderator removes: anyone below them who joined (present or not) and is not removed yet."""
    actor = ctx.require_present()
    member = ctx.member_of(user_id)
    if member is None or member.removed:
        raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
    rules.check_remove(actor, ctx.role_of(user_id) or Role.LISTENER)
    return member


def leave_seat(ctx: Ctx, user_id: str, reason: str, grace_until: float) -> Change:
    """Someone on stage leaves the space: a speaker gives up the seat; the host and co-hosts
    keep theirs, away (the host for a grace period)."""
    entry = ctx.stage.get(user_id)
    if entry is None:
        raise CommandError(ErrorCode.CONFLICT, "not on stage")
    if rules.gives_up_seat_on_leave(entry.role):
        return Change(
            stage=ctx.stage.demote(user_id), reason=reason, target=user_id, role=Role.LISTENER, exit="left"
        )
    return Change(
        stage=ctx.stage.mark_away(user_id),
        reason=reason,
        target=user_id,
        exit="left",
        grace_deadline=grace_until if entry.role == Role.HOST else None,
    )


def expel(ctx: Ctx, user_id: str, reason: str) -> Change:
    """Out for the rest of the space (the stage seat, if any, goes with it)."""
    return Change(
        stage=ctx.stage.demote(user_id), reason=reason, target=user_id, role=Role.LISTENER, exit="removed"
    )


class HostReturned(Exception):
    """The host rejoined while their grace period was being closed: nothing to do."""


def hand_over(ctx: Ctx, old_host: str, now: float) -> Change:
    """The host's grace period ran out: the longest-serving present co-host takes over."""
    deadline = ctx.space.grace_deadline
    host = ctx.stage.get(old_host)
    if ctx.space.host_id != old_host or deadline is None or deadline > now or (host and host.present):
        raise HostReturned()
    successor = ctx.stage.next_host(old_host)
    if successor is None:
        raise CommandError(ErrorCode.CONFLICT, "no co-host is present to take over")
    return Change(
        stage=ctx.stage.hand_over(old_host, successor),
        reason="host_handover",
        target=successor,
        role=Role.HOST,
        new_host=successor,
    )
