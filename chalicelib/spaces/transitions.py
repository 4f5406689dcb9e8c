"""Applying a stage change: the conditional write (retried on a lost race), the media
capability, and the announcement. Media calls never run inside a DynamoDB transaction:
the write comes first, and if the media service refuses, the stage is put back."""

from __future__ import annotations

from collections.abc import Callable

from pynamodb.exceptions import TransactWriteError

from chalicelib import clients, fanout, media, placement
from chalicelib.db import is_conflict
from chalicelib.errors import CommandError, ErrorCode
from chalicelib.models import Member, Space
from chalicelib.observability import logger
from chalicelib.rules import ON_STAGE, Role
from chalicelib.spaces import store
from chalicelib.spaces.decisions import Change, Ctx
from chalicelib.spaces.stage import Stage

STAGE_RETRIES = 6


def run(
    user_id: str,
    connection_id: str | None,
    space_id: str,
    decide: Callable[[Ctx], Change],
    *,
    target: str | None = None,
) -> tuple[Ctx, Change]:
    """Read, decide by the rules, write conditionally; on a lost race read and decide again."""
    for _ in range(STAGE_RETRIES):
        ctx = store.load(user_id, connection_id, space_id, target=target)
        change = decide(ctx)
        try:
            store.commit(ctx, change)
        except TransactWriteError as exc:
            if is_conflict(exc):
                continue
            raise
        _apply_audio(ctx, change)
        return ctx, change
    raise CommandError(ErrorCode.CONFLICT, "the stage changed while you acted; try again")


def run_and_announce(
    user_id: str,
    connection_id: str | None,
    space_id: str,
    decide: Callable[[Ctx], Change],
    *,
    target: str | None = None,
) -> Change:
    _, change = run(user_id, connection_id, space_id, decide, target=target)
    announce(space_id, change.stage, change.reason, change.target)
    return change


def announce(space_id: str, stage: Stage, reason: str, user_id: str) -> None:
    fanout.broadcast(space_id, "stage.changed", stage=stage.public(), reason=reason, user_id=user_id)


def _apply_audio(ctx: Ctx, change: Change) -> None:
    if change.audio is None or change.audio == change.previous_audio:
        return
    target = store.get_member(ctx.space.space_id, change.target)
    if target is None or not target.attendee_id or not target.meeting_id:
        return
    on_stage = (change.stage.role_of(change.target) or Role.LISTENER) in ON_STAGE
    space = ctx.space
    try:
        if target.meeting_id != space.meeting_id and on_stage:
            _move_to_primary(space, target, change.audio)
        elif target.meeting_id == space.meeting_id and not on_stage and space.replica_count:
            # Back to the audience: give the primary's seat back, or each promote and
            # demote cycle would use one up for good.
            _move_to_replica(space, target, change.audio)
        else:
            clients.media().update_attendee_audio(target.meeting_id, target.attendee_id, change.audio)
    except media.MediaError:
        logger.exception("media capability update failed; putting the stage back")
        store.revert(ctx, change)
        raise CommandError(
            ErrorCode.INTERNAL, "the media service did not accept the change; nothing changed"
        ) from None


def _move_to_primary(space: Space, target: Member, audio: str) -> None:
    """The stage speaks in the primary meeting: a listener promoted from a replica gets a new
    attendee there, the old one is deleted, and the client gets fresh credentials."""
    assert space.meeting is not None
    primary = placement.meeting_from(space.meeting)
    _move(space, target, primary, clients.media().create_attendee(primary.meeting_id, target.user_id, audio))


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
    safe_delete_attendee(old_meeting, old_attendee)
    fanout.send_private(
        [target.connection_id or ""],
        "media.moved",
        space.space_id,
        media=media.credentials(meeting, attendee),
    )


def safe_delete_attendee(meeting_id: str | None, attendee_id: str | None) -> bool:
    """Delete the attendee (already gone counts as deleted); False, logged, if the media service failed."""
    if not meeting_id or not attendee_id:
        return True
    try:
        clients.media().delete_attendee(meeting_id, attendee_id)
    except media.MediaError:
        logger.exception("could not delete attendee", extra={"attendee_id": attendee_id})
        return False
    return True
