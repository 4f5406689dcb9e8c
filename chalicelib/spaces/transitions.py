"""Applying a stage change: the conditional write (retried on a lost race), the media
capability, and the announcement. Media calls never run inside a DynamoDB transaction:
the write comes first, and if the media service refuses, the stage is put back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from pynamodb.exceptions import TransactWriteError, UpdateError

from chalicelib import clients, fanout, media, placement
from chalicelib.db import condition_failed, is_conflict
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
    """The target's audio at the media service, after the stage change was written.

    Someone seated in a replica and brought on stage is promoted the way Chime's SDK does it:
    an attendee in the primary meeting is created for them and its credentials go to the
    client (`media.promoted`), which promotes its replica connection with them
    (`audioVideo.promoteToPrimaryMeeting`); the replica attendee and the connection stay.
    Back to the audience, the primary attendee is deleted (`media.demoted`), which demotes the
    client. https://docs.aws.amazon.com/chime/latest/dg/media-replication.html ("Interactive
    participants"), https://aws.github.io/amazon-chime-sdk-js/modules/replicatedmeetings.html
    """
    if change.audio is None:
        return
    target = store.get_member(ctx.space.space_id, change.target)
    if target is None or not target.attendee_id or not target.meeting_id:
        return
    on_stage = (change.stage.role_of(change.target) or Role.LISTENER) in ON_STAGE
    space = ctx.space
    in_replica = target.meeting_id != space.meeting_id
    promoted = bool(target.primary_attendee_id) and target.primary_meeting_id == space.meeting_id
    unchanged = change.audio == change.previous_audio
    try:
        if in_replica and on_stage and not promoted:
            _promote_to_primary(space, target, change.audio)
        elif in_replica and not on_stage and target.primary_attendee_id:
            # Even when the capability is the same (a host-muted speaker): the seat goes back.
            _demote_from_primary(space, target)
        elif in_replica and on_stage:
            if not unchanged:  # the promoted member speaks through the primary attendee
                assert target.primary_meeting_id and target.primary_attendee_id
                clients.media().update_attendee_audio(
                    target.primary_meeting_id, target.primary_attendee_id, change.audio
                )
        elif not in_replica and not on_stage and space.replica_count:
            # Back to the audience: give the primary's seat back, or each promote and
            # demote cycle would use one up for good.
            _move_to_replica(space, target, change.audio)
        elif not unchanged:
            clients.media().update_attendee_audio(target.meeting_id, target.attendee_id, change.audio)
    except media.MediaError as exc:
        logger.exception("media capability update failed; putting the stage back")
        store.revert(ctx, change)
        refused = placement.refusal(exc)
        if refused is not None:
            raise refused from None
        raise CommandError(
            ErrorCode.INTERNAL, "the media service did not accept the change; nothing changed"
        ) from None
    except CommandError:
        store.revert(ctx, change)  # a refusal already in the client's terms (a full space, throttling)
        raise


def _promote_to_primary(space: Space, target: Member, audio: str) -> None:
    """An attendee in the primary for a member seated in a replica, recorded beside the replica
    one, and its credentials to the client. A promotion takes a seat in the primary, so a full
    primary refuses it (LimitExceeded: `limit_reached`, the stage is put back)."""
    assert space.meeting is not None
    primary = placement.meeting_from(space.meeting)
    attendee = clients.media().create_attendee(primary.meeting_id, target.user_id, audio)
    try:
        target.update(
            actions=[
                Member.primary_attendee_id.set(attendee.attendee_id),
                Member.primary_meeting_id.set(primary.meeting_id),
                Member.primary_join_token.set(attendee.join_token),
            ],
            condition=(Member.present == True)  # noqa: E712
            & (Member.removed.does_not_exist() | (Member.removed == False))  # noqa: E712
            & (Member.attendee_id == target.attendee_id),
        )
    except UpdateError as exc:
        # Left, removed or rejoined meanwhile: nobody holds this seat in the primary.
        safe_delete_attendee(primary.meeting_id, attendee.attendee_id)
        if condition_failed(exc):
            return
        raise CommandError(ErrorCode.INTERNAL, "could not record the promotion; nothing changed") from None
    fanout.send_private(
        [target.connection_id or ""],
        "media.promoted",
        space.space_id,
        media=media.credentials(primary, attendee),
    )


def _demote_from_primary(space: Space, target: Member) -> None:
    """Delete the member's primary attendee (only): Chime demotes the client's connection, which
    goes on receiving through the replica attendee. A failed delete raises (the stage is put back)."""
    assert target.primary_attendee_id
    clients.media().delete_attendee(target.primary_meeting_id or "", target.primary_attendee_id)
    with contextlib.suppress(UpdateError):  # cleared meanwhile (left, rejoined)
        target.update(
            actions=[
                Member.primary_attendee_id.remove(),
                Member.primary_meeting_id.remove(),
                Member.primary_join_token.remove(),
            ],
            condition=Member.primary_attendee_id == target.primary_attendee_id,
        )
    fanout.send_private([target.connection_id or ""], "media.demoted", space.space_id)


def primary_credentials(space: Space, member: Member, audio: str) -> media.JoinCredentials | None:
    """The credentials of a member's primary attendee, if they hold one in the space's current
    primary meeting (a resume: the client promotes its replica connection again)."""
    if not (member.primary_attendee_id and member.primary_join_token and space.meeting):
        return None
    if member.primary_meeting_id != space.meeting_id:
        return None
    attendee = media.Attendee(
        attendee_id=member.primary_attendee_id,
        external_user_id=media.external_user_id(member.user_id),
        join_token=member.primary_join_token,
        meeting_id=member.primary_meeting_id,
        audio=audio,
    )
    return media.credentials(placement.meeting_from(space.meeting), attendee)


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
