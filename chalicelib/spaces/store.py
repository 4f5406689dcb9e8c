"""Reading a space and writing its stage changes: the only module of the package that
talks to DynamoDB for the stage. The stored stage format is converted here
(Stage.from_stored in Ctx, Stage.to_stored on write)."""

from __future__ import annotations

import random
import time
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactGetError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactGet, TransactWrite

from chalicelib import counters
from chalicelib.clock import now_iso
from chalicelib.db import dynamo, is_read_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Connection, Member, Presence, Relation, Space
from chalicelib.rules import Role, SpaceState
from chalicelib.spaces.decisions import Change, Ctx

GRACE_SHARD = "grace"


def not_found(what: str = "space") -> CommandError:
    return CommandError(ErrorCode.NOT_FOUND, f"{what} not found")


def get_space(space_id: str) -> Space:
    try:
        return Space.get(space_id, consistent_read=True)
    except DoesNotExist:
        raise not_found() from None


def get_member(space_id: str, user_id: str) -> Member | None:
    try:
        return Member.get(space_id, user_id, consistent_read=True)
    except DoesNotExist:
        return None


def load(
    user_id: str,
    connection_id: str | None,
    space_id: str,
    *,
    target: str | None = None,
    with_counts: bool = False,
    with_connection: bool = False,
) -> Ctx:
    """The space, the caller's membership, the target's (if any) and the space's event seq in
    one TransactGetItems call; with_counts adds the listener counter shards (19 items, well
    under the 100 a call takes), with_connection the caller's connection record.

    DynamoDB cancels a TransactGetItems that meets a TransactWriteItems in progress on one of
    its items (TransactionConflict), and a join storm writes the counter shards all the time:
    the read is tried again a few times (jittered), then answered `conflict` ("try again"),
    never `internal`. https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling
    """
    for wait in (*_READ_CONFLICT_WAITS, None):
        try:
            return _load_once(user_id, connection_id, space_id, target, with_counts, with_connection)
        except TransactGetError as exc:
            if not is_read_conflict(exc):
                raise
            if wait is None:
                raise CommandError(ErrorCode.CONFLICT, "the space is busy; try again") from None
            time.sleep(wait * (0.5 + random.random()))
    raise AssertionError("unreachable")


# Waits between tries of a transactional read that met a concurrent write (seconds, jittered).
_READ_CONFLICT_WAITS = (0.01, 0.02, 0.05, 0.1, 0.2)


def _load_once(
    user_id: str,
    connection_id: str | None,
    space_id: str,
    target: str | None,
    with_counts: bool,
    with_connection: bool,
) -> Ctx:
    with TransactGet(connection=dynamo()) as tx:
        connection_future = (
            tx.get(Connection, connection_id) if with_connection and connection_id is not None else None
        )
        space_future = tx.get(Space, space_id)
        member_future = tx.get(Member, space_id, user_id)
        target_future = tx.get(Member, space_id, target) if target and target != user_id else None
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
    ctx = Ctx(user_id, connection_id, space, _member(member_future))
    if target_future is not None:
        ctx.target = _member(target_future)
    try:
        seq_item = seq_future.get()
        ctx.seq, ctx.count_published_at = int(seq_item.seq or 0), float(seq_item.published_at or 0)
    except counters.SpaceCounter.DoesNotExist:
        pass
    if with_counts:
        ctx.listeners = sum(_shard_value(f) for f in shard_futures)
    if connection_future is not None:
        try:
            ctx.connection = connection_future.get()
        except Connection.DoesNotExist:
            ctx.connection = None
    return ctx


def _member(future: Any) -> Member | None:
    try:
        member: Member = future.get()
    except Member.DoesNotExist:
        return None
    return member


def _shard_value(future: Any) -> int:
    try:
        return int(future.get().listeners or 0)
    except counters.SpaceCounter.DoesNotExist:
        return 0


def blockers_among(candidates: list[str], user_id: str) -> set[str]:
    """Which of these users block user_id (key lookups, one BatchGetItem)."""
    keys = [(c, f"block#{user_id}") for c in candidates if c != user_id]
    return {r.user_id for r in Relation.batch_get(keys)} if keys else set()


def follows(user_id: str, other: str) -> bool:
    try:
        Relation.get(user_id, f"follow#{other}")
    except DoesNotExist:
        return False
    return True


# -- a stage change as conditional writes -------------------------------------------

_DROP_ATTENDEES = (
    Member.attendee_id.remove(),
    Member.primary_attendee_id.remove(),
    Member.primary_meeting_id.remove(),
)
_LEAVE_ACTIONS = (
    Member.present.set(False),
    Member.connection_id.remove(),
    Member.hand_raised_at.remove(),
    Member.invited_at.remove(),
    Member.away_until.remove(),
    Member.away_shard.remove(),
    Member.join_token.remove(),
    Member.attendee_external.remove(),
    Member.primary_join_token.remove(),
    Member.audio.remove(),
    Member.audio_at.remove(),
    *_DROP_ATTENDEES,
)


def open_socket(tx: TransactWrite, space_id: str, user_id: str, connection_id: str) -> None:
    """The presence row of a member whose connection_id becomes `connection_id`: in the same
    transaction as the member item, so the two never disagree (fanout.recipients reads it)."""
    tx.save(Presence(space_id, user_id, connection_id=connection_id))


def socket_gone(tx: TransactWrite, space_id: str, user_id: str) -> None:
    """No presence row for a member whose connection_id is removed (left, away, removed)."""
    tx.delete(Presence(space_id, user_id))


def exit_actions(removed: bool) -> list[Any]:
    """The member item of someone who leaves the space (or is removed from it for good).

    A removal keeps `attendee_id` (and a promoted member's `primary_attendee_id`): a join racing
    the removal may have written a new attendee after the remover read the member, and the
    remover deletes whatever the removed member holds once no join can succeed any more
    (membership.expel, clear_removed_attendee)."""
    if removed:
        kept = [a for a in _LEAVE_ACTIONS if all(a is not d for d in _DROP_ATTENDEES)]
        return [*kept, Member.removed.set(True)]
    return list(_LEAVE_ACTIONS)


def _member_writes(change: Change) -> tuple[list[Any], Condition]:
    actions: list[Any] = []
    condition: Condition = Member.user_id.exists()
    if change.role is not None:
        actions.append(Member.role.set(change.role.value))
    if change.promoted:
        actions += [Member.hand_raised_at.remove(), Member.invited_at.remove()]
        condition = (Member.present == True) & (Member.removed == False)  # noqa: E712
        # The seat carries the audio state read from the member: an attendee event applied since
        # makes the promotion read and decide again (spaces/presence.py), not lose the state.
        entry = change.stage.get(change.target)
        if entry is not None:
            at = entry.audio_at
            condition &= Member.audio_at.does_not_exist() if at is None else (Member.audio_at == at)
    if change.exit is not None:
        actions += exit_actions(change.exit == "removed")
    return actions, condition


def _space_actions(change: Change) -> list[Any]:
    if change.grace_deadline is not None:
        return [Space.grace_shard.set(GRACE_SHARD), Space.grace_deadline.set(change.grace_deadline)]
    if change.new_host is not None:
        return [Space.host_id.set(change.new_host), Space.grace_deadline.remove(), Space.grace_shard.remove()]
    return []


def commit(ctx: Ctx, change: Change) -> None:
    """One transaction, conditional on the stage the decision was made on (stage_version);
    a TransactWriteError with a conflict means: read again and decide again."""
    space = ctx.space
    with TransactWrite(connection=dynamo()) as tx:
        tx.update(
            space,
            actions=[
                Space.stage.set(change.stage.to_stored()),
                Space.stage_version.add(1),
                Space.updated_at.set(now_iso()),
                *_space_actions(change),
            ],
            condition=(Space.stage_version == space.stage_version) & (Space.state == SpaceState.LIVE),
        )
        member_actions, member_condition = _member_writes(change)
        if member_actions:
            tx.update(
                Member(space.space_id, change.target), actions=member_actions, condition=member_condition
            )
        if change.exit is not None:
            socket_gone(tx, space.space_id, change.target)
        if change.listener_delta:
            tx.update(*counters.change(space.space_id, change.target, change.listener_delta))


def revert(ctx: Ctx, change: Change) -> None:
    """Put the stage and the target's member item back (the media service refused the change)."""
    space = ctx.space
    with TransactWrite(connection=dynamo()) as tx:
        tx.update(
            space,
            actions=[Space.stage.set(ctx.stage.to_stored()), Space.stage_version.add(1)],
            condition=Space.stage_version == space.stage_version + 1,
        )
        if change.listener_delta:
            tx.update(*counters.change(space.space_id, change.target, -change.listener_delta))
        member_actions, _ = _member_writes(change)
        if member_actions:
            old_role = ctx.stage.role_of(change.target) or Role.LISTENER
            undo: list[Any] = [Member.role.set(old_role.value)]
            before = ctx.member_of(change.target)
            if change.promoted and before is not None:
                if before.hand_raised_at:
                    undo.append(Member.hand_raised_at.set(before.hand_raised_at))
                if before.invited_at:
                    undo.append(Member.invited_at.set(before.invited_at))
            tx.update(Member(space.space_id, change.target), actions=undo)
