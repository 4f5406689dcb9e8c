"""Spaces: lifecycle, stage and membership. The rules are in rules.py; this is the I/O around them.

Order of effects, so that a failure leaves nothing half-written:
- join: the media attendee first, then one DynamoDB transaction; if the write
  fails the attendee is deleted again.
- role changes: one conditional transaction on the space's stage_version, then
  the capability change at the media service; if that fails the stage is put
  back and the command fails.
- removal: the attendee is deleted first (its join token dies with it), then
  the membership is marked removed.
Media calls never run inside a DynamoDB transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pynamodb.connection import Connection as DynamoConnection
from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactGet, TransactWrite

from chalicelib import counters, fanout, media, placement, rules
from chalicelib.config import get_settings
from chalicelib.models import Connection, Member, Relation, Space
from chalicelib.observability import logger
from chalicelib.protocol import CommandError, ErrorCode
from chalicelib.rules import Role, SpaceState

GRACE_SHARD = "grace"
STAGE_RETRIES = 6


def now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_dynamo: DynamoConnection | None = None


def dynamo() -> DynamoConnection:
    global _dynamo
    if _dynamo is None:
        _dynamo = DynamoConnection(region=get_settings().region)
    return _dynamo


def not_found(what: str = "space") -> CommandError:
    return CommandError(ErrorCode.NOT_FOUND, f"{what} not found")


# -- reading -----------------------------------------------------------------


@dataclass
class Ctx:
    """A command's view of one space: the caller, the space item and the caller's member item."""

    user_id: str
    connection_id: str | None
    space: Space
    member: Member | None
    seq: int = 0  # the space's last event number when this was read
    count_published_at: float = 0.0  # when the last listeners.count event went out
    listeners: int | None = None  # exact listener count, when read with the counters

    @property
    def stage(self) -> dict[str, dict[str, Any]]:
        return self.space.stage or {}

    def role_of(self, user_id: str, member: Member | None = None) -> Role | None:
        entry = self.stage.get(user_id)
        if entry:
            return Role(entry["role"])
        if member is not None and member.present and not member.removed:
            return Role.LISTENER
        return None

    @property
    def role(self) -> Role | None:
        return self.role_of(self.user_id, self.member)

    def require_present(self) -> Role:
        rules.require_live(self.space.state)
        if self.member is None or not self.member.present or self.member.removed:
            raise CommandError(ErrorCode.NOT_ALLOWED, "join the space first")
        role = self.role
        assert role is not None
        return role


def get_space(space_id: str) -> Space:
    try:
        return Space.get(space_id, consistent_read=True)
    except DoesNotExist:
        raise not_found() from None


def load(user_id: str, connection_id: str | None, space_id: str, with_counts: bool = False) -> Ctx:
    """The space, the caller's membership and the space's event seq in one TransactGetItems call;
    with_counts adds the listener counter shards (19 items, well under the 100 a call takes)."""
    with TransactGet(connection=dynamo()) as tx:
        space_future = tx.get(Space, space_id)
        member_future = tx.get(Member, space_id, user_id)
        seq_future = tx.get(counters.SpaceCounter, counters.seq_key(space_id))
        shard_futures = (
            [tx.get(counters.SpaceCounter, key) for key in counters.shard_keys(space_id)]
            if with_counts
            else []
        )
    try:
        space = space_future.get()
    except Space.DoesNotExist:
        raise not_found() from None
    try:
        member: Member | None = member_future.get()
    except Member.DoesNotExist:
        member = None
    ctx = Ctx(user_id, connection_id, space, member)
    try:
        seq_item = seq_future.get()
        ctx.seq, ctx.count_published_at = int(seq_item.seq or 0), float(seq_item.published_at or 0)
    except counters.SpaceCounter.DoesNotExist:
        pass
    if with_counts:
        ctx.listeners = sum(_shard_value(f) for f in shard_futures)
    return ctx


def _shard_value(future: Any) -> int:
    try:
        return int(future.get().listeners or 0)
    except counters.SpaceCounter.DoesNotExist:
        return 0


def public_view(space_id: str) -> dict[str, Any]:
    """GET /spaces/{id}: the space with its exact listener count."""
    space = get_space(space_id)
    return public_space(space, counters.listeners(space_id) if space.state == SpaceState.LIVE else None)


def get_member(space_id: str, user_id: str) -> Member | None:
    try:
        return Member.get(space_id, user_id, consistent_read=True)
    except DoesNotExist:
        return None


def moderators(stage: dict[str, dict[str, Any]]) -> list[str]:
    return [uid for uid, e in stage.items() if e["role"] in (Role.HOST, Role.COHOST)]


def moderator_connections(stage: dict[str, dict[str, Any]], exclude: set[str] | None = None) -> list[str]:
    return [
        e["connection_id"]
        for uid, e in stage.items()
        if e["role"] in (Role.HOST, Role.COHOST)
        and e.get("present")
        and e.get("connection_id")
        and uid not in (exclude or set())
    ]


def blockers_among(candidates: list[str], user_id: str) -> set[str]:
    """Which of these users block user_id (key lookups, one BatchGetItem)."""
    if not candidates:
        return set()
    keys = [(c, f"block#{user_id}") for c in candidates if c != user_id]
    return {r.user_id for r in Relation.batch_get(keys)} if keys else set()


def follows(user_id: str, other: str) -> bool:
    try:
        Relation.get(user_id, f"follow#{other}")
    except DoesNotExist:
        return False
    return True


# -- public shapes -----------------------------------------------------------


def stage_list(stage: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The public view of a stage: host, co-hosts, speakers, each by seniority."""
    order = {Role.HOST: 0, Role.COHOST: 1, Role.SPEAKER: 2}
    entries = sorted(
        (stage or {}).items(), key=lambda kv: (order[Role(kv[1]["role"])], kv[1].get("since", ""))
    )
    return [
        {
            "user_id": uid,
            "role": e["role"],
            "present": bool(e.get("present")),
            "muted": bool(e.get("muted")),
            "muted_by": e.get("muted_by"),
        }
        for uid, e in entries
    ]


def public_space(space: Space, listeners: int | None = None) -> dict[str, Any]:
    """The space resource; field names follow X API v2's Space object where they overlap.

    `listener_count` is the exact count when given (one read of the counter shards),
    else the last published one; `participant_count` is always the published one.
    """
    stage = space.stage or {}
    return {
        "id": space.space_id,
        "state": space.state,
        "title": space.title,
        "creator_id": space.creator_id,
        "host_ids": [uid for uid, e in stage.items() if e["role"] in (Role.HOST, Role.COHOST)],
        "speaker_ids": [uid for uid, e in stage.items() if e["role"] == Role.SPEAKER],
        "invited_user_ids": list(space.invited_user_ids or []),
        "participant_count": int(space.participant_count or 0),
        "listener_count": int(space.listener_count or 0) if listeners is None else listeners,
        "scheduled_start": space.scheduled_start,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        "created_at": space.created_at,
        "updated_at": space.updated_at,
        "lang": space.lang,
        "speak_policy": space.speak_policy,
        "handover": bool(space.handover),
        "stage": stage_list(space.stage),
    }


def hand_queue(space_id: str, limit: int = 100) -> list[dict[str, Any]]:
    return [
        {"user_id": m.user_id, "raised_at": m.hand_raised_at}
        for m in Member.hands.query(space_id, limit=limit)
        if m.present and not m.removed
    ]


def snapshot(
    space: Space, user_id: str, role: Role, seq: int, media_credentials: Any = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "space": public_space(space),
        "role": role.value,
        "seq": seq,
        "stage": stage_list(space.stage),
        "listener_count": int(space.listener_count or 0),
    }
    if media_credentials is not None:
        data["media"] = media_credentials
    if role in rules.MODERATORS:
        data["hands"] = hand_queue(space.space_id)
    return data


# -- stage transitions -------------------------------------------------------


@dataclass
class Transition:
    """What a command changes: the new stage, member updates, media changes and the event."""

    stage: dict[str, dict[str, Any]]
    reason: str
    target: str
    member_actions: list[Any] = field(default_factory=list)
    member_condition: Condition | None = None
    space_actions: list[Any] = field(default_factory=list)
    audio: str | None = None  # new capability for the target's attendee
    previous_audio: str | None = None
    listener_delta: int = 0  # the target joins (+1) or leaves (-1) the listener count
    # What puts the space and the target's member item back if the media service refuses the change.
    undo_space_actions: list[Any] = field(default_factory=list)
    undo_member_actions: list[Any] = field(default_factory=list)


def _audio_for(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return media.audio_capability(Role.LISTENER, False)
    return media.audio_capability(entry["role"], entry.get("muted_by") == "host")


def _commit_stage(ctx: Ctx, t: Transition) -> None:
    space = ctx.space
    now = now_iso()
    with TransactWrite(connection=dynamo()) as tx:
        tx.update(
            space,
            actions=[
                Space.stage.set(t.stage),
                Space.stage_version.add(1),
                Space.updated_at.set(now),
                *t.space_actions,
            ],
            condition=(Space.stage_version == space.stage_version) & (Space.state == SpaceState.LIVE),
        )
        if t.member_actions:
            tx.update(
                Member(space.space_id, t.target),
                actions=t.member_actions,
                condition=t.member_condition if t.member_condition is not None else Member.user_id.exists(),
            )
        if t.listener_delta:
            tx.update(*counters.change(space.space_id, t.target, t.listener_delta))


def _is_conflict(exc: TransactWriteError) -> bool:
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)


def transition(
    user_id: str, connection_id: str | None, space_id: str, decide: Callable[[Ctx], Transition]
) -> tuple[Ctx, Transition]:
    """Read, decide by the rules, write conditionally; on a lost race re-read and decide again."""
    for _ in range(STAGE_RETRIES):
        ctx = load(user_id, connection_id, space_id)
        t = decide(ctx)
        try:
            _commit_stage(ctx, t)
        except TransactWriteError as exc:
            if _is_conflict(exc):
                continue
            raise
        _apply_audio(ctx, t)
        return ctx, t
    raise CommandError(ErrorCode.CONFLICT, "the stage changed while you acted; try again")


def _apply_audio(ctx: Ctx, t: Transition) -> None:
    if t.audio is None or t.audio == t.previous_audio:
        return
    target = get_member(ctx.space.space_id, t.target)
    if target is None or not target.attendee_id or not target.meeting_id:
        return
    on_stage = Role(t.stage.get(t.target, {}).get("role", "listener")) in rules.ON_STAGE
    try:
        if target.meeting_id != ctx.space.meeting_id and on_stage:
            _move_to_primary(ctx.space, target, t.audio)
        elif target.meeting_id == ctx.space.meeting_id and not on_stage and ctx.space.replica_count:
            # Back to the audience: give the primary's seat back, or each promote and
            # demote cycle would use one up for good.
            _move_to_replica(ctx.space, target, t.audio)
        else:
            media.get_media().update_attendee_audio(target.meeting_id, target.attendee_id, t.audio)
    except media.MediaError:
        logger.exception("media capability update failed; putting the stage back")
        _revert_stage(ctx, t)
        raise CommandError(
            ErrorCode.INTERNAL, "the media service did not accept the change; nothing changed"
        ) from None


def _move_to_primary(space: Space, target: Member, audio: str) -> None:
    """The stage speaks in the primary meeting: a listener promoted from a replica gets a new
    attendee there, the old one is deleted, and the client gets fresh credentials."""
    assert space.meeting is not None
    primary = placement.meeting_from(space.meeting)
    _move(
        space, target, primary, media.get_media().create_attendee(primary.meeting_id, target.user_id, audio)
    )


def _move_to_replica(space: Space, target: Member, audio: str) -> None:
    """A demoted speaker listens from a replica once the space has them."""
    meeting, attendee = placement.place(
        space, target.user_id, Role.LISTENER, audio, listeners=placement.PAST_PRIMARY
    )
    _move(space, target, meeting, attendee)


def _move(space: Space, target: Member, meeting: media.Meeting, attendee: media.Attendee) -> None:
    old_meeting, old_attendee = target.meeting_id, target.attendee_id
    target.update(
        actions=[Member.attendee_id.set(attendee.attendee_id), Member.meeting_id.set(meeting.meeting_id)]
    )
    _safe_delete_attendee(old_meeting, old_attendee)
    fanout.send_private(
        [target.connection_id or ""],
        "media.moved",
        space.space_id,
        media=media.credentials(meeting, attendee),
    )


def _revert_stage(ctx: Ctx, t: Transition) -> None:
    space = ctx.space
    old_member_role = ctx.role_of(t.target, Member(space.space_id, t.target, present=True)) or Role.LISTENER
    with TransactWrite(connection=dynamo()) as tx:
        tx.update(
            space,
            actions=[Space.stage.set(ctx.stage), Space.stage_version.add(1), *t.undo_space_actions],
            condition=Space.stage_version == space.stage_version + 1,
        )
        if t.listener_delta:
            tx.update(*counters.change(space.space_id, t.target, -t.listener_delta))
        if t.member_actions:
            tx.update(
                Member(space.space_id, t.target),
                actions=[Member.role.set(old_member_role.value), *t.undo_member_actions],
            )


def announce_stage(space_id: str, t: Transition) -> None:
    fanout.broadcast(space_id, "stage.changed", stage=stage_list(t.stage), reason=t.reason, user_id=t.target)


def stage_entry(role: Role, connection_id: str | None, present: bool = True) -> dict[str, Any]:
    return {
        "role": role.value,
        "present": present,
        "muted": True,
        "muted_by": "self",
        "since": now_iso(),
        "connection_id": connection_id,
    }


def _stage_counts(stage: dict[str, dict[str, Any]]) -> rules.StageCount:
    return rules.StageCount(
        on_stage=len(stage), cohosts=sum(1 for e in stage.values() if e["role"] == Role.COHOST)
    )


def _promotion(ctx: Ctx, target: Member, role: Role, reason: str) -> Transition:
    stage = dict(ctx.stage)
    stage[target.user_id] = stage_entry(role, target.connection_id)
    undo_member: list[Any] = []
    if target.hand_raised_at:
        undo_member.append(Member.hand_raised_at.set(target.hand_raised_at))
    if target.invited_at:
        undo_member.append(Member.invited_at.set(target.invited_at))
    return Transition(
        stage=stage,
        reason=reason,
        target=target.user_id,
        member_actions=[
            Member.role.set(role.value),
            Member.hand_raised_at.remove(),
            Member.invited_at.remove(),
        ],
        member_condition=(Member.present == True) & (Member.removed == False),  # noqa: E712
        listener_delta=-1,
        audio=_audio_for(stage[target.user_id]),
        previous_audio=_audio_for(None),
        undo_member_actions=undo_member,
    )


def _demotion(ctx: Ctx, target_id: str, reason: str) -> Transition:
    stage = dict(ctx.stage)
    old = stage.pop(target_id)
    return Transition(
        stage=stage,
        reason=reason,
        target=target_id,
        member_actions=[Member.role.set(Role.LISTENER.value)],
        listener_delta=1 if old.get("present") else 0,
        audio=_audio_for(None),
        previous_audio=_audio_for(old),
    )


def _recast(ctx: Ctx, user_id: str, role: Role, reason: str) -> Transition:
    """Someone on stage takes another stage role (speaker <-> co-host); their seat stays."""
    stage = dict(ctx.stage)
    stage[user_id] = dict(stage[user_id], role=role.value)
    return Transition(
        stage=stage, reason=reason, target=user_id, member_actions=[Member.role.set(role.value)]
    )


def _target_member(ctx: Ctx, user_id: str) -> tuple[Member, Role]:
    member = get_member(ctx.space.space_id, user_id)
    role = ctx.role_of(user_id, member)
    if member is None or role is None or not member.present:
        raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
    return member, role


# -- commands ----------------------------------------------------------------


def join(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id, with_counts=True)
    space = ctx.space
    rules.require_live(space.state)
    member = ctx.member
    if member is not None and member.removed:
        raise CommandError(ErrorCode.NOT_ALLOWED, "you were removed from this space")
    if blockers_among(moderators(ctx.stage), conn.user_id):
        # Deliberately the same refusal as any other: a block is not revealed.
        raise CommandError(ErrorCode.NOT_ALLOWED, "you cannot join this space")
    entry = ctx.stage.get(conn.user_id)
    role = Role(entry["role"]) if entry else Role.LISTENER
    already_present = member is not None and member.present
    replaced = (
        member.connection_id
        if already_present and member and member.connection_id != conn.connection_id
        else None
    )

    if entry is None and not already_present:
        _check_room(ctx.listeners or 0)
    meeting, attendee = placement.place(space, conn.user_id, role, _audio_for(entry), ctx.listeners or 0)
    now = now_iso()
    try:
        with TransactWrite(connection=dynamo()) as tx:
            tx.update(
                Member(space_id, conn.user_id),
                actions=[
                    Member.role.set(role.value),
                    Member.present.set(True),
                    Member.removed.set(False),
                    Member.connection_id.set(conn.connection_id),
                    Member.attendee_id.set(attendee.attendee_id),
                    Member.meeting_id.set(attendee.meeting_id),
                    Member.joined_at.set(now),
                ],
                condition=Member.removed.does_not_exist() | (Member.removed == False),  # noqa: E712
            )
            if entry is not None:
                # Stage members rejoin through the space item (rare: at most 13 of them).
                space.stage = dict(
                    ctx.stage, **{conn.user_id: dict(entry, present=True, connection_id=conn.connection_id)}
                )
                space_actions: list[Any] = [
                    Space.updated_at.set(now),
                    Space.stage.set(space.stage),
                    Space.stage_version.add(1),
                ]
                if role == Role.HOST:
                    space_actions += [Space.grace_deadline.remove(), Space.grace_shard.remove()]
                tx.update(
                    space,
                    actions=space_actions,
                    condition=(Space.state == SpaceState.LIVE) & (Space.stage_version == space.stage_version),
                )
            elif not already_present:
                # Listeners never write the space item: its counter shard says whether the
                # space is still on and has room (counters.py).
                tx.update(*counters.join_update(space_id, conn.user_id))
            else:
                tx.condition_check(Space, space_id, condition=Space.state == SpaceState.LIVE)
            tx.update(Connection(conn.connection_id), actions=[Connection.space_id.set(space_id)])
    except TransactWriteError as exc:
        if not already_present:
            _safe_delete_attendee(attendee.meeting_id, attendee.attendee_id)
        if _is_conflict(exc):
            if entry is None and not already_present:
                _check_room(counters.listeners(space_id))
                if get_space(space_id).state == SpaceState.ENDED:
                    raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended") from None
            raise CommandError(ErrorCode.CONFLICT, "the space changed while you joined; try again") from None
        raise

    if replaced:
        fanout.send_private([replaced], "session.replaced", space_id)
        fanout.disconnect(replaced)
    if entry is not None:
        announce_stage(space_id, Transition(stage=space.stage, reason="rejoined", target=conn.user_id))
        if role == Role.HOST and space.grace_deadline:
            fanout.broadcast(space_id, "host.back", user_id=conn.user_id)
    elif not already_present:
        publish_listener_count(space, last_published=ctx.count_published_at)
    # The joiner's snapshot: the exact count as read with the counters, the joiner included.
    space.listener_count = (ctx.listeners or 0) + (1 if entry is None and not already_present else 0)
    return snapshot(space, conn.user_id, role, ctx.seq, media.credentials(meeting, attendee))


def _check_room(listeners: int) -> None:
    """Refuse a listener past MAX_LISTENERS (the counter shards' own cap backs this up under races)."""
    limit = get_settings().max_listeners
    if listeners >= limit:
        raise CommandError(ErrorCode.LIMIT_REACHED, f"this space is full ({limit} listeners)")


def _safe_delete_attendee(meeting_id: str | None, attendee_id: str | None) -> None:
    if not meeting_id or not attendee_id:
        return
    try:
        media.get_media().delete_attendee(meeting_id, attendee_id)
    except media.MediaError:
        logger.exception("could not delete attendee", extra={"attendee_id": attendee_id})


def publish_listener_count(space: Space, force: bool = False, last_published: float | None = None) -> bool:
    """At most one listeners.count event per space per interval; the sweep publishes what is left.

    `last_published`, when the caller read it already, spares the conditional write while
    the interval is still running (most joins of a storm).
    """
    settings = get_settings()
    # Big rooms get fewer count events (a count event is one post per person present):
    # at most ~25 posts a second per space up to 1,500 listeners, then one event a minute.
    interval = min(60.0, max(settings.listener_count_interval_seconds, int(space.listener_count or 0) / 25))
    # The naive baseline (benchmark only) tells everyone about every join and leave.
    if not force and not settings.naive_fanout:
        if last_published is not None and time.time() - last_published < interval:
            return False
        if not counters.claim_publication(space.space_id, interval):
            return False
    listeners = counters.listeners(space.space_id)
    participants = listeners + sum(1 for e in (space.stage or {}).values() if e.get("present"))
    try:
        space.update(
            actions=[Space.participant_count.set(participants), Space.listener_count.set(listeners)],
            condition=Space.state == SpaceState.LIVE,
        )
    except UpdateError:
        return False
    fanout.broadcast(
        space.space_id, "listeners.count", listener_count=listeners, participant_count=participants
    )
    return True


def leave(user_id: str, space_id: str, connection_id: str | None, reason: str = "left") -> bool:
    """The user leaves (or their socket dropped). Only the connection that joined can leave."""
    try:
        ctx = load(user_id, connection_id, space_id)
    except CommandError:
        return False
    member = ctx.member
    if member is None or not member.present:
        return False
    if connection_id is not None and member.connection_id != connection_id:
        return False  # replaced by a newer device
    space = ctx.space
    entry = ctx.stage.get(user_id)
    member_actions: list[Any] = [
        Member.present.set(False),
        Member.connection_id.remove(),
        Member.hand_raised_at.remove(),
        Member.invited_at.remove(),
        Member.attendee_id.remove(),
    ]
    if entry is None or space.state != SpaceState.LIVE:
        try:
            with TransactWrite(connection=dynamo()) as tx:
                tx.update(
                    member, actions=member_actions, condition=Member.connection_id == member.connection_id
                )
                if entry is None:
                    tx.update(*counters.change(space_id, user_id, -1))
        except TransactWriteError:
            return False
        _safe_delete_attendee(member.meeting_id, member.attendee_id)
        if entry is None and space.state == SpaceState.LIVE:
            publish_listener_count(space)
        return True

    role = Role(entry["role"])

    def decide(c: Ctx) -> Transition:
        stage = dict(c.stage)
        current = stage.get(user_id)
        actions: list[Any] = []
        if current is None:
            raise CommandError(ErrorCode.CONFLICT, "not on stage")
        if Role(current["role"]) == Role.SPEAKER:
            stage.pop(user_id)  # a speaker who leaves gives up the seat
            m_actions = [*member_actions, Member.role.set(Role.LISTENER.value)]
        else:
            stage[user_id] = dict(current, present=False, connection_id=None)
            m_actions = list(member_actions)
            if Role(current["role"]) == Role.HOST:
                deadline = time.time() + get_settings().host_grace_seconds
                actions = [Space.grace_shard.set(GRACE_SHARD), Space.grace_deadline.set(deadline)]
        return Transition(
            stage=stage, reason=reason, target=user_id, member_actions=m_actions, space_actions=actions
        )

    try:
        _, t = transition(user_id, connection_id, space_id, decide)
    except CommandError:
        return False
    _safe_delete_attendee(member.meeting_id, member.attendee_id)
    announce_stage(space_id, t)
    if role == Role.HOST:
        fresh = get_space(space_id)
        fanout.broadcast(space_id, "host.away", user_id=user_id, grace_deadline=fresh.grace_deadline)
    return True


def sync(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    role = ctx.require_present()
    ctx.space.listener_count = counters.listeners(space_id)
    return snapshot(ctx.space, conn.user_id, role, ctx.seq)


def raise_hand(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    role = ctx.require_present()
    policy = rules.SpeakPolicy(ctx.space.speak_policy)
    follows_caller = policy == rules.SpeakPolicy.FOLLOWING and follows(ctx.space.host_id, conn.user_id)
    rules.check_hand_raise(role, policy, host_follows_caller=follows_caller)
    assert ctx.member is not None
    if ctx.member.hand_raised_at:
        return {"hand_raised_at": ctx.member.hand_raised_at}
    raised_at = now_iso()
    ctx.member.update(
        actions=[Member.hand_raised_at.set(raised_at)],
        condition=(Member.present == True) & (Member.connection_id == conn.connection_id),  # noqa: E712
    )
    hidden_from = blockers_among(moderators(ctx.stage), conn.user_id)
    fanout.send_private(
        moderator_connections(ctx.stage, exclude=hidden_from), "hand.raised", space_id, user_id=conn.user_id
    )
    return {"hand_raised_at": raised_at}


def lower_hand(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    assert ctx.member is not None
    if not ctx.member.hand_raised_at:
        raise CommandError(ErrorCode.CONFLICT, "your hand is not raised")
    ctx.member.update(actions=[Member.hand_raised_at.remove()])
    fanout.send_private(moderator_connections(ctx.stage), "hand.lowered", space_id, user_id=conn.user_id)
    return {}


def invite_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    actor = ctx.require_present()
    rules.require_moderator(actor)
    target, role = _target_member(ctx, user_id)
    if role != Role.LISTENER:
        raise CommandError(ErrorCode.CONFLICT, "that person is already on stage")
    rules.require_seat(_stage_counts(ctx.stage))
    target.update(
        actions=[Member.invited_at.set(now_iso()), Member.invited_by.set(conn.user_id)],
        condition=Member.present == True,  # noqa: E712
    )
    invited: list[Any] = list(ctx.space.invited_user_ids or [])
    if user_id not in invited:
        ctx.space.update(actions=[Space.invited_user_ids.set([*invited, user_id][-100:])])
    fanout.send_private([target.connection_id or ""], "speaker.invited", space_id, by=conn.user_id)
    return {}


def accept_invite(conn: Connection, space_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        role = ctx.require_present()
        assert ctx.member is not None
        if not ctx.member.invited_at:
            raise CommandError(ErrorCode.CONFLICT, "you have no invitation to speak")
        if role != Role.LISTENER:
            raise CommandError(ErrorCode.CONFLICT, "you are already on stage")
        rules.require_seat(_stage_counts(ctx.stage))
        return _promotion(ctx, ctx.member, Role.SPEAKER, "invite_accepted")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {"role": Role.SPEAKER.value}


def decline_invite(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    assert ctx.member is not None
    if not ctx.member.invited_at:
        raise CommandError(ErrorCode.CONFLICT, "you have no invitation to speak")
    ctx.member.update(actions=[Member.invited_at.remove(), Member.invited_by.remove()])
    fanout.send_private(moderator_connections(ctx.stage), "invite.declined", space_id, user_id=conn.user_id)
    return {}


def approve_request(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        actor = ctx.require_present()
        rules.require_moderator(actor)
        target, role = _target_member(ctx, user_id)
        if role == Role.LISTENER and not target.hand_raised_at:
            raise CommandError(ErrorCode.CONFLICT, "that person has not asked to speak")
        rules.check_promote(actor, role, _stage_counts(ctx.stage))
        return _promotion(ctx, target, Role.SPEAKER, "request_approved")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {}


def deny_request(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    actor = ctx.require_present()
    rules.require_moderator(actor)
    target, _ = _target_member(ctx, user_id)
    if not target.hand_raised_at:
        raise CommandError(ErrorCode.CONFLICT, "that person has not asked to speak")
    target.update(actions=[Member.hand_raised_at.remove()])
    fanout.send_private([target.connection_id or ""], "hand.denied", space_id, by=conn.user_id)
    fanout.send_private(moderator_connections(ctx.stage), "hand.lowered", space_id, user_id=user_id)
    return {}


def leave_stage(conn: Connection, space_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        role = ctx.require_present()
        rules.check_stage_leave(role)
        return _demotion(ctx, conn.user_id, "left_stage")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {"role": Role.LISTENER.value}


def remove_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        actor = ctx.require_present()
        _, role = _target_member(ctx, user_id)
        rules.check_demote(actor, role)
        return _demotion(ctx, user_id, "moved_to_audience")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {}


def _mic(conn: Connection, space_id: str, target_id: str, mute: bool, by_host: bool) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        actor = ctx.require_present()
        if by_host:
            _, role = _target_member(ctx, target_id)
            rules.check_mute_other(actor, role)
        else:
            rules.check_self_mic(actor)
        stage = dict(ctx.stage)
        old = stage[target_id]
        new = dict(old, muted=mute, muted_by=("host" if by_host else "self") if mute else None)
        stage[target_id] = new
        return Transition(
            stage=stage,
            reason="muted" if mute else "unmuted",
            target=target_id,
            audio=_audio_for(new),
            previous_audio=_audio_for(old),
        )

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {"muted": mute}


def mute_self(conn: Connection, space_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, conn.user_id, True, by_host=False)


def unmute_self(conn: Connection, space_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, conn.user_id, False, by_host=False)


def mute_speaker(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    return _mic(conn, space_id, user_id, True, by_host=True)


def remove_participant(
    conn: Connection, space_id: str, user_id: str, reason: str = "removed"
) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    actor = ctx.require_present()
    member = get_member(space_id, user_id)
    role = ctx.role_of(user_id, member)
    if member is None or member.removed:
        raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
    rules.check_remove(actor, role or Role.LISTENER)
    expel(ctx.space, member, reason, by=conn.user_id)
    return {}


def expel(space: Space, member: Member, reason: str, by: str) -> None:
    """Remove a member for the rest of the space: attendee deleted first, then the membership."""
    user_id = member.user_id
    _safe_delete_attendee(member.meeting_id, member.attendee_id)
    was_on_stage = user_id in (space.stage or {})
    member_actions: list[Any] = [
        Member.removed.set(True),
        Member.present.set(False),
        Member.role.set(Role.LISTENER.value),
        Member.connection_id.remove(),
        Member.attendee_id.remove(),
        Member.hand_raised_at.remove(),
        Member.invited_at.remove(),
    ]

    def decide(c: Ctx) -> Transition:
        stage = dict(c.stage)
        stage.pop(user_id, None)
        return Transition(stage=stage, reason=reason, target=user_id, member_actions=member_actions)

    if was_on_stage:
        _, t = transition(by, None, space.space_id, decide)
    else:
        with TransactWrite(connection=dynamo()) as tx:
            tx.update(Member(space.space_id, user_id), actions=member_actions)
            if member.present:
                tx.update(*counters.change(space.space_id, user_id, -1))
    fanout.send_private([member.connection_id or ""], "participant.removed", space.space_id, reason=reason)
    if was_on_stage:
        announce_stage(space.space_id, t)
    elif member.present:
        publish_listener_count(space)


def add_cohost(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        actor = ctx.require_present()
        target, role = _target_member(ctx, user_id)
        rules.check_cohost_add(actor, role, _stage_counts(ctx.stage))
        if role == Role.LISTENER:
            return _promotion(ctx, target, Role.COHOST, "cohost_added")
        return _recast(ctx, user_id, Role.COHOST, "cohost_added")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    _remove_blocked_by(get_space(space_id), user_id)
    return {}


def _remove_blocked_by(space: Space, moderator: str) -> None:
    """A new co-host's blocks take effect at once: people they block leave the space."""
    from chalicelib.relations import blocked_by

    for blocked in blocked_by(moderator):
        target = get_member(space.space_id, blocked)
        if target is not None and target.present and not target.removed:
            if (space.stage or {}).get(blocked, {}).get("role") in (Role.HOST, Role.COHOST):
                continue
            expel(space, target, "removed", by=moderator)


def remove_cohost(conn: Connection, space_id: str, user_id: str) -> dict[str, Any]:
    def decide(ctx: Ctx) -> Transition:
        actor = ctx.require_present()
        role = ctx.role_of(user_id)
        if role is None:
            raise CommandError(ErrorCode.NOT_FOUND, "that person is not in this space")
        rules.check_cohost_remove(actor, role)
        return _recast(ctx, user_id, Role.SPEAKER, "cohost_removed")

    _, t = transition(conn.user_id, conn.connection_id, space_id, decide)
    announce_stage(space_id, t)
    return {}


def update_settings(conn: Connection, space_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    actions: list[Any] = [Space.updated_at.set(now_iso())]
    if "title" in changes:
        title = rules.validate_title(changes["title"])
        changes["title"] = title
        actions += [Space.title.set(title), Space.title_lc.set(title.lower())]
    if "speak_policy" in changes:
        actions.append(Space.speak_policy.set(changes["speak_policy"]))
    if "handover" in changes:
        actions.append(Space.handover.set(bool(changes["handover"])))
    if len(actions) == 1:
        raise CommandError(ErrorCode.BAD_REQUEST, "nothing to change")
    ctx.space.update(actions=actions, condition=Space.state == SpaceState.LIVE)
    fanout.broadcast(space_id, "settings.changed", settings=changes)
    return {"settings": changes}


def react(conn: Connection, space_id: str, emoji: str) -> dict[str, Any]:
    if emoji not in rules.REACTIONS:
        raise CommandError(ErrorCode.BAD_REQUEST, "unknown reaction", {"allowed": sorted(rules.REACTIONS)})
    ctx = load(conn.user_id, conn.connection_id, space_id)
    ctx.require_present()
    settings = get_settings()
    window = int(time.time() // settings.reaction_window_seconds)
    member = Member(space_id, conn.user_id)
    try:
        member.update(
            actions=[Member.reaction_count.add(1)],
            condition=(Member.reaction_window == window) & (Member.reaction_count < settings.reaction_limit),
        )
    except UpdateError:
        try:
            member.update(
                actions=[Member.reaction_window.set(window), Member.reaction_count.set(1)],
                condition=Member.reaction_window.does_not_exist() | (Member.reaction_window != window),
            )
        except UpdateError:
            raise CommandError(
                ErrorCode.RATE_LIMITED,
                f"at most {settings.reaction_limit} reactions per {settings.reaction_window_seconds} s",
            ) from None
    fanout.broadcast(space_id, "reaction", user_id=conn.user_id, emoji=emoji)
    return {}


def end_by_host(conn: Connection, space_id: str) -> dict[str, Any]:
    ctx = load(conn.user_id, conn.connection_id, space_id)
    rules.require_host(ctx.require_present())
    end_space(ctx.space, "ended_by_host")
    return {"state": SpaceState.ENDED.value}


def end_space(space: Space, reason: str, only_if: Condition | None = None) -> bool:
    """End a live or scheduled space: state first, then tell everyone, then the meeting.

    `only_if` is a further condition on the space item (False, nothing done, if it does not hold).
    """
    now = now_iso()
    condition = Space.state != SpaceState.ENDED
    if only_if is not None:
        condition &= only_if
    try:
        # One transaction with the counter shards, so no listener join lands after the end.
        with TransactWrite(connection=dynamo()) as tx:
            tx.update(
                space,
                actions=[
                    Space.state.set(SpaceState.ENDED.value),
                    Space.ended_at.set(now),
                    Space.updated_at.set(now),
                    Space.ended_reason.set(reason),
                    Space.grace_deadline.remove(),
                    Space.grace_shard.remove(),
                ],
                condition=condition,
            )
            for counter, actions in counters.close_updates(space.space_id):
                tx.update(counter, actions=actions)
    except TransactWriteError:
        return False
    space.state = SpaceState.ENDED.value
    fanout.broadcast(space.space_id, "space.ended", reason=reason)
    for meeting_id in placement.all_meetings(space):  # replicas first, then the primary
        try:
            media.get_media().delete_meeting(meeting_id)
        except media.MediaError:
            logger.exception("could not delete meeting", extra={"meeting_id": meeting_id})
    return True


# -- host grace period and handover --------------------------------------------


class _HostReturned(Exception):
    """The host rejoined while their grace period was being closed: nothing to do."""


def expire_grace(now: float | None = None) -> int:
    """Spaces whose host did not come back in time: hand over to a co-host, or end.

    The host can rejoin at any moment (their join clears grace_deadline in the same
    write that marks them present), so both outcomes are conditional on the grace
    period still running out: a host who came back keeps the space.
    """
    now = time.time() if now is None else now
    handled = 0
    still_expired = Space.grace_deadline <= now
    for space in Space.by_grace.query(GRACE_SHARD, Space.grace_deadline <= now):
        handled += 1
        host = (space.stage or {}).get(space.host_id)
        if host is not None and host.get("present"):
            space.update(actions=[Space.grace_deadline.remove(), Space.grace_shard.remove()])
            continue
        successor = rules.next_host(space.stage or {}, space.host_id) if space.handover else None
        if successor is None:
            end_space(space, "host_left", only_if=still_expired)
            continue
        try:
            _hand_over(space, now)
        except _HostReturned:
            continue
        except CommandError:
            end_space(space, "host_left", only_if=still_expired)
    return handled


def _hand_over(space: Space, now: float) -> None:
    old_host = space.host_id

    def decide(ctx: Ctx) -> Transition:
        deadline = ctx.space.grace_deadline
        host = ctx.stage.get(old_host)
        if ctx.space.host_id != old_host or deadline is None or deadline > now or (host or {}).get("present"):
            raise _HostReturned()
        successor = rules.next_host(ctx.stage, old_host)
        if successor is None:
            raise CommandError(ErrorCode.CONFLICT, "no co-host is present to take over")
        stage = dict(ctx.stage)
        stage.pop(old_host, None)
        stage[successor] = dict(stage[successor], role=Role.HOST.value)
        return Transition(
            stage=stage,
            reason="host_handover",
            target=successor,
            member_actions=[Member.role.set(Role.HOST.value)],
            space_actions=[
                Space.host_id.set(successor),
                Space.grace_deadline.remove(),
                Space.grace_shard.remove(),
            ],
        )

    _, t = transition(old_host, None, space.space_id, decide)
    Member(space.space_id, old_host).update(actions=[Member.role.set(Role.LISTENER.value)])
    announce_stage(space.space_id, t)


def publish_pending_counts() -> int:
    """Listener counts that changed since their last event (the coalescing's tail)."""
    published = 0
    for space in Space.by_state.query(SpaceState.LIVE.value):
        listeners = counters.listeners(space.space_id)
        participants = listeners + sum(1 for e in (space.stage or {}).values() if e.get("present"))
        if participants != int(space.participant_count or 0) and publish_listener_count(space):
            published += 1
    return published


# -- REST: lifecycle -----------------------------------------------------------


def create(
    creator: str,
    title: str,
    *,
    scheduled_start: str | None,
    speak_policy: str,
    lang: str | None,
    handover: bool,
) -> Space:
    now = now_iso()
    space_id = uuid.uuid4().hex[:16]
    space = Space(
        space_id,
        state=SpaceState.SCHEDULED.value if scheduled_start else SpaceState.LIVE.value,
        title=title,
        title_lc=title.lower(),
        creator_id=creator,
        host_id=creator,
        lang=lang,
        speak_policy=speak_policy,
        handover=handover,
        created_at=now,
        updated_at=now,
        scheduled_start=scheduled_start,
        stage={creator: stage_entry(Role.HOST, None, present=False)},
        stage_version=0,
        participant_count=0,
        listener_count=0,
    )
    if not scheduled_start:
        _go_live_fields(space)
    space.save(condition=Space.space_id.does_not_exist())
    return space


def _go_live_fields(space: Space) -> None:
    meeting = media.get_media().create_meeting(
        space.space_id, max_attendees=get_settings().meeting_max_attendees
    )
    space.meeting_id = meeting.meeting_id
    space.meeting = {
        "meeting_id": meeting.meeting_id,
        "external_meeting_id": meeting.external_meeting_id,
        "media_region": meeting.media_region,
        "media_placement": meeting.media_placement,
        "primary_meeting_id": meeting.primary_meeting_id,
    }
    space.started_at = now_iso()


def start(user_id: str, space_id: str) -> Space:
    space = get_space(space_id)
    if space.host_id != user_id:
        raise CommandError(ErrorCode.NOT_ALLOWED, "only the host can start the space")
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has ended")
    if space.state == SpaceState.LIVE:
        raise CommandError(ErrorCode.CONFLICT, "the space is already live")
    _go_live_fields(space)
    try:
        space.update(
            actions=[
                Space.state.set(SpaceState.LIVE.value),
                Space.meeting_id.set(space.meeting_id),
                Space.meeting.set(space.meeting),
                Space.started_at.set(space.started_at),
                Space.updated_at.set(now_iso()),
            ],
            condition=Space.state == SpaceState.SCHEDULED,
        )
    except UpdateError:
        assert space.meeting_id is not None
        media.get_media().delete_meeting(space.meeting_id)
        raise CommandError(ErrorCode.CONFLICT, "the space changed; try again") from None
    return space


def cancel(user_id: str, space_id: str) -> Space:
    space = get_space(space_id)
    if space.host_id != user_id:
        raise CommandError(ErrorCode.NOT_ALLOWED, "only the host can cancel the space")
    if space.state != SpaceState.SCHEDULED:
        raise CommandError(ErrorCode.CONFLICT, "only a scheduled space can be cancelled")
    if not end_space(space, "cancelled"):
        raise CommandError(ErrorCode.CONFLICT, "the space changed; try again")
    return get_space(space_id)


def end_rest(user_id: str, space_id: str) -> Space:
    space = get_space(space_id)
    if space.host_id != user_id:
        raise CommandError(ErrorCode.NOT_ALLOWED, "only the host can end the space")
    if space.state == SpaceState.ENDED:
        raise CommandError(ErrorCode.SPACE_ENDED, "the space has already ended")
    end_space(space, "ended_by_host")
    return get_space(space_id)


def on_connection_gone(connection_id: str, record: Connection | None) -> None:
    if record is not None and record.space_id:
        leave(record.user_id, record.space_id, connection_id, reason="disconnected")


# -- REST: lists ---------------------------------------------------------------

_STATE_INDEX_KEYS = {"space_id", "state", "participant_count"}
_SCHEDULE_INDEX_KEYS = {"space_id", "state", "scheduled_start"}
_CREATOR_INDEX_KEYS = {"space_id", "creator_id", "created_at"}


def _listable_state(state: str) -> str:
    if state not in (SpaceState.LIVE, SpaceState.SCHEDULED):
        raise CommandError(ErrorCode.BAD_REQUEST, "state must be live or scheduled")
    return state


def _page(results: Any) -> dict[str, Any]:
    from chalicelib.schemas import encode_cursor

    items = [public_space(s) for s in results]
    return {"data": items, "next_cursor": encode_cursor(results.last_evaluated_key)}


def list_page(state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Live spaces, largest audience first; or scheduled spaces, soonest first."""
    from chalicelib.schemas import decode_cursor

    if _listable_state(state) == SpaceState.LIVE:
        results = Space.by_state.query(
            state,
            scan_index_forward=False,
            limit=limit,
            last_evaluated_key=decode_cursor(cursor, _STATE_INDEX_KEYS),
        )
    else:
        results = Space.by_schedule.query(
            state,
            scan_index_forward=True,
            limit=limit,
            last_evaluated_key=decode_cursor(cursor, _SCHEDULE_INDEX_KEYS),
        )
    return _page(results)


def search(query: str, state: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """Title search within one state: a Query on the state index with a filter, never a Scan."""
    from chalicelib.schemas import decode_cursor

    needle = " ".join(query.split()).lower()
    if not 1 <= len(needle) <= 70:
        raise CommandError(ErrorCode.BAD_REQUEST, "query must be 1-70 characters")
    index = Space.by_state if _listable_state(state) == SpaceState.LIVE else Space.by_schedule
    keys = _STATE_INDEX_KEYS if index is Space.by_state else _SCHEDULE_INDEX_KEYS
    results = index.query(
        state,
        filter_condition=Space.title_lc.contains(needle),
        scan_index_forward=index is not Space.by_state,
        limit=limit,
        page_size=100,
        last_evaluated_key=decode_cursor(cursor, keys),
    )
    return _page(results)


def by_creator(user_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    from chalicelib.schemas import decode_cursor

    results = Space.by_creator.query(
        user_id,
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_cursor(cursor, _CREATOR_INDEX_KEYS),
    )
    return _page(results)
